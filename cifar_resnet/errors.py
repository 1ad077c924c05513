"""The one exception type for mistakes a user can make and fix."""


class CifarResnetError(Exception):
    """A user-fixable problem: missing data, a bad file, a wrong configuration.

    The message names the file or value that is wrong and says what to do. The command
    line prints it as one line on stderr and exits with status 2; Jupyter shows the same one line
    instead of a traceback through the package.
    """

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show for this error: its name and message, in red."""
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]
