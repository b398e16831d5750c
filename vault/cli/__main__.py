"""``python -m vault.cli``: the ``vault`` command."""

from vault.cli import main

main()
