"""What the `voicebank` command line calls in the issuer package."""

from issuer._devinit import DevInitError, dev_init
from issuer._keys_cli import AdminCommandError, keys_command
from issuer._serve import serve_all, up

__all__ = ["AdminCommandError", "DevInitError", "dev_init", "keys_command", "serve_all", "up"]
