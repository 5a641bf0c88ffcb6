"""The kernel side of the change: the header and the commit message (jinja2), the C callers
(spatch), and the mail (git)."""
