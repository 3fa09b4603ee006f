"""``python -m drpo.cli``: the same as the ``drpo`` command."""

from drpo.cli.app import main

main()
