"""The evidence: one runner for every check, the twin objects, execution on kexec images, the
patch, and the kernel's own checkers (Kbuild, sparse, gcc, Coccinelle)."""
