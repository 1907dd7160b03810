"""pyprobe generate: synthetic flow records for testing collectors (run.py), from a traffic
profile (profile.py), with faults on purpose (faults.py); its options (options.py) are rows
of the probe's option table, which imports them without loading the generator."""
