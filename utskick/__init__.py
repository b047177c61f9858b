"""utskick: newsletters for Swedish municipal federations, from YAML to every member's inbox."""

__version__ = "0.1.0"
