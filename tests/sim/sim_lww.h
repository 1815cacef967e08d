/*
 * sim_lww.h - the `--scenario lww` run of kvc-sim (sim_lww.c).
 */
#ifndef KVC_SIM_LWW_H
#define KVC_SIM_LWW_H

/* Runs the replicated-map scenario with kvc-sim's argv; returns the exit
 * code (1 on a broken invariant, 2 on bad options). */
int kvc_sim_lww_main(int argc, char **argv);

#endif
