// every stack passed to relocate_new_kernel comes from the image's control pages
//
// Arguments 5 and 6 of the call in ia64_machine_kexec() must come from memory that
// kimage_alloc_control_pages() gave this image: a field of image->arch that
// machine_kexec_prepare() sets from it (directly, through a local, or from
// image->control_code_page), or the control page the call's descriptor points at (trees
// without struct kimage_arch keep the stacks there, after the code). Else the stack pointer
// of the relocation code is an address the copy loop may overwrite, or none at all.

@initialize:python@
@@
used = {}
allocated = set()
calls = []

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
E->arch.F = <+... kimage_alloc_control_pages(I, O) ...+>;
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
E->arch.F = <+... x ...+>;
... when any
}

@script:python@
F << through_local.F;
@@
allocated.add(F)

@from_control_page exists@
identifier F;
expression E, I;
@@
machine_kexec_prepare(...) {
... when any
E->arch.F = <+... I->control_code_page ...+>;
... when any
}

@script:python@
F << from_control_page.F;
@@
allocated.add(F)

@descriptor@
typedef relocate_new_kernel_t;
relocate_new_kernel_t rnk;
identifier code;
type T;
@@
rnk = (T)&code;

@call@
expression f, a1, a2, a3, a4, A5, A6;
position p;
@@
ia64_machine_kexec(...) { <+... f@p(a1, a2, a3, a4, A5, A6) ...+> }

@script:python@
A5 << call.A5;
A6 << call.A6;
p << call.p;
code << descriptor.code = "";
@@
calls.append((f"{p[0].file}:{p[0].line}", A5, A6, code))

@finalize:python@
@@
import re
for field, (file, line) in sorted(used.items()):
    if field not in allocated:
        print(f"{file}:{line}: image->arch.{field} is passed to relocate_new_kernel, but "
              "machine_kexec_prepare() does not set it from kimage_alloc_control_pages() or "
              "the image's control page")
for where, A5, A6, code in calls:
    for number, argument in ((5, A5), (6, A6)):
        tight = re.sub(r"\s+", "", argument)  # spatch prints `image -> arch . stacks`
        pages = "->arch." in tight or "control_code_page" in tight or (
            code and re.search(rf"\b{re.escape(code)}\b", tight))
        if not pages:
            print(f"{where}: argument {number} `{argument}` comes neither from image->arch "
                  "nor from the image's control page")
