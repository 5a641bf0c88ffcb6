// the memory stack is argument 5 and the register stack argument 6
//
// relocate_new_kernel reads in4 (argument 5) as the memory stack (sp) and in5 (argument 6)
// as the register stack (ar.bspstore). With one block for both stacks the memory stack is
// its start and the register stack lies KEXEC_MEMORY_STACK_SIZE bytes in; with an offset
// or a field per stack the names say which is which. Types cannot tell the two apart.

@initialize:python@
@@
import re
calls = []

@call@
expression f, a1, a2, a3, a4, A5, A6;
position p;
@@
ia64_machine_kexec(...) { <+... f@p(a1, a2, a3, a4, A5, A6) ...+> }

@script:python@
A5 << call.A5;
A6 << call.A6;
p << call.p;
@@
where = f"{p[0].file}:{p[0].line}"
calls.append(where)
register_at_5 = "KEXEC_MEMORY_STACK_SIZE" in A5 or re.search(r"register", A5, re.I)
memory_at_6 = re.search(r"memory", A6, re.I) and "KEXEC_MEMORY_STACK_SIZE" not in A6
if register_at_5 or memory_at_6:
    print(f"{where}: the stacks are swapped: argument 5 is `{A5}` and argument 6 `{A6}`; "
          "relocate_new_kernel reads the memory stack from argument 5 (in4) and the register "
          "stack from argument 6 (in5)")
elif A5.replace(" ", "") == A6.replace(" ", ""):
    print(f"{where}: arguments 5 and 6 are the same address `{A5}`: the two stacks overlap")

@finalize:python@
@@
if not calls:
    print("ia64_machine_kexec() has no call with 6 arguments: the stacks do not reach "
          "relocate_new_kernel")
