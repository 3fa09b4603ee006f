"""The ``drpo`` command line: the Typer app in ``app``, options declared once in ``options``,
one module per command group."""
