/*
 * sim_failover.h - the `--scenario failover` run of kvc-sim (sim_failover.c).
 */
#ifndef KVC_SIM_FAILOVER_H
#define KVC_SIM_FAILOVER_H

/* Runs the failover scenario with kvc-sim's argv; returns the exit code
 * (1 on any invariant violation, 2 on bad options). */
int kvc_sim_failover_main(int argc, char **argv);

#endif
