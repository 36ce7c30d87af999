"""What the `voicebank` command line calls in the issuer package."""

from issuer._devinit import DevInitError, dev_init
from issuer._keys_cli import AdminCommandError, keys_command
from issuer._serve import ServeError, SharedLoopServer, issuer_server, preflight, serve_all, up

__all__ = [
    "AdminCommandError",
    "DevInitError",
    "ServeError",
    "SharedLoopServer",
    "dev_init",
    "issuer_server",
    "keys_command",
    "preflight",
    "serve_all",
    "up",
]
