"""relgen: regenerate the ia64 kexec control page, all code first and the stacks as arguments."""

__version__ = "0.1.0"
