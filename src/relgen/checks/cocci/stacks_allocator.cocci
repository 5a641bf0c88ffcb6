// the stacks come from kimage_alloc_control_pages(), not another allocator
//
// Only kimage_alloc_control_pages() keeps a page clear of every destination of a normal
// image and inside the crash region of a kdump image; alloc_pages() and friends give pages
// that the copy loop may overwrite. Report mode: every line printed is a failure.

@initialize:python@
@@
def report(position, text):
    print(f"{position[0].file}:{position[0].line}: {text}")

@direct@
expression E;
identifier F, A != {kimage_alloc_control_pages, page_to_phys, virt_to_phys, __pa};
position p;
@@
E->arch.F = A@p(...)

@script:python@
p << direct.p;
F << direct.F;
A << direct.A;
@@
report(p, f"image->arch.{F} comes from {A}(), not kimage_alloc_control_pages()")

@through_local exists@
expression E;
identifier F, A != {kimage_alloc_control_pages, page_to_phys, virt_to_phys, __pa};
idexpression x;
position p;
@@
x = A@p(...);
... when != x = kimage_alloc_control_pages(...)
E->arch.F = <+... x ...+>;

@script:python@
p << through_local.p;
F << through_local.F;
A << through_local.A;
@@
report(p, f"image->arch.{F} comes from {A}(), not kimage_alloc_control_pages()")
