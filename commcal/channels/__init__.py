"""Channel adapters: one module per network, registered under the `commcal.channels` entry points."""
