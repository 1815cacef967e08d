/*
 * sim_election.h - the `--scenario election` run of kvc-sim (sim_election.c).
 */
#ifndef KVC_SIM_ELECTION_H
#define KVC_SIM_ELECTION_H

/* Runs the election scenario with kvc-sim's argv; returns the exit code
 * (1 on any safety violation, 2 on bad options). */
int kvc_sim_election_main(int argc, char **argv);

#endif
