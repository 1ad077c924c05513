"""The one exception type for mistakes a user can make and fix."""


class CifarResnetError(Exception):
    """A user-fixable problem: missing data, a bad file, a wrong configuration.

    The message names the file or value that is wrong and says what to do. The command
    line prints it as one line on stderr and exits with status 2.
    """
