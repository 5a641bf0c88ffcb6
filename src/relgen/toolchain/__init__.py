"""The assembler side: the kernel tree and its era, cpp and `as`, objdump, the ELF objects
(pyelftools), and the control-page map with its pictures."""
