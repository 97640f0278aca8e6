"""The command shim: a small C program (`shim.c`) that stands in for `sh`, `bash`, `dash`
and the programs a policy names, asks the gateway's decision API before anything runs,
and then execs the real program; `install.py` builds it and installs it into a
directory with its configuration and one symlink per shimmed name."""
