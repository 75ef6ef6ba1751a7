"""The one exception type for problems the user can fix."""


class BertcError(Exception):
    """Bad input or an impossible request: the CLI prints it on one line and exits with code 2."""
