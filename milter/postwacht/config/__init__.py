"""Configuration: the policy file read and checked, compiled into the core's model, and
the running policy that a reload replaces only with a valid successor."""
