/*
 * cli_ca.h - the `kvc ca`, `kvc cert` and `kvc keygen` commands: making the
 * federation key, issuing and inspecting peer credentials, making a node
 * keypair. The `kvc` binary's dispatcher calls these with argv[0] set to
 * the command word ("ca", "cert", "keygen").
 *
 * Each returns the process exit code: 0 success, 1 failure (one line
 * "kvc: ..." on stderr), 2 usage error (one line ending with a hint such as
 * "see 'kvc cert --help'"). Normal output and --help go to stdout. They
 * never exit(), keep no state between calls and do not touch getopt's
 * globals, so they can be called many times in one process (tests do).
 * argv is only read; nothing is kept after return.
 */
#ifndef KVC_CLI_CA_H
#define KVC_CLI_CA_H

/* kvc ca init --out DIR */
int kvc_cli_ca(int argc, char **argv);

/* kvc cert issue ... | kvc cert show FILE [--trust PUB] [--json] */
int kvc_cli_cert(int argc, char **argv);

/* kvc keygen --out FILE */
int kvc_cli_keygen(int argc, char **argv);

#endif
