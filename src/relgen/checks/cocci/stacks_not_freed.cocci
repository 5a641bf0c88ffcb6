// the stacks are not freed in machine_kexec_cleanup(): kimage_free() owns them
//
// kimage_alloc_control_pages() puts its pages on the image's control-page list, and
// kimage_free() frees that list after machine_kexec_cleanup(): freeing them here frees twice.

@freed@
identifier free =~ "free";
expression E;
identifier F;
position p;
@@
machine_kexec_cleanup(...) { <+... free@p(..., <+... E->arch.F ...+>, ...) ...+> }

@script:python@
p << freed.p;
free << freed.free;
F << freed.F;
@@
print(f"{p[0].file}:{p[0].line}: machine_kexec_cleanup() frees image->arch.{F} with "
      f"{free}(); kimage_free() frees control pages itself")
