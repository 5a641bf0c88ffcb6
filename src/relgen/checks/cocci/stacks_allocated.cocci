// every stack passed to relocate_new_kernel is allocated in machine_kexec_prepare()
//
// A field of image->arch that ia64_machine_kexec() reads must be set from
// kimage_alloc_control_pages() in machine_kexec_prepare() (directly or through a local
// variable): else the stack pointer of the relocation code is a null page's address.

@initialize:python@
@@
used = {}
allocated = set()

@reads@
identifier F;
expression E;
position p;
@@
ia64_machine_kexec(...) { <+... E->arch.F@p ...+> }

@script:python@
F << reads.F;
p << reads.p;
@@
used.setdefault(F, (p[0].file, p[0].line))

@direct exists@
identifier F;
expression E, I, O;
@@
machine_kexec_prepare(...) {
... when any
E->arch.F = kimage_alloc_control_pages(I, O);
... when any
}

@script:python@
F << direct.F;
@@
allocated.add(F)

@through_local exists@
identifier F;
expression E, I, O;
idexpression x;
@@
machine_kexec_prepare(...) {
... when any
x = kimage_alloc_control_pages(I, O);
... when any
E->arch.F = x;
... when any
}

@script:python@
F << through_local.F;
@@
allocated.add(F)

@finalize:python@
@@
for field, (file, line) in sorted(used.items()):
    if field not in allocated:
        print(f"{file}:{line}: image->arch.{field} is passed to relocate_new_kernel, but "
              "machine_kexec_prepare() does not allocate it with kimage_alloc_control_pages()")
