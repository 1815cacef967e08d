/*
 * sim_registry.h - the `--scenario registry` run of kvc-sim
 * (sim_registry.c): the model registry's replication at the daemon's
 * settings, publish latency across sites and a rejoining peer's catch-up.
 */
#ifndef KVC_SIM_REGISTRY_H
#define KVC_SIM_REGISTRY_H

/* Runs the registry scenario with kvc-sim's argv; returns the exit code (1
 * on a broken invariant, 2 on bad options). */
int kvc_sim_registry_main(int argc, char **argv);

#endif
