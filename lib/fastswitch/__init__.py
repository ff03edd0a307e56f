"""FastSwitch shared library: generated API (fastswitch.v1) and code every service uses."""

__version__ = "0.1.0"
