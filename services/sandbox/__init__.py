"""A local stand-in for every outside system, for development and tests."""

from services.sandbox.control import SandboxControl
from services.sandbox.server import Sandbox
from services.sandbox.state import DEFAULT_INSTALLERS, SandboxConfig

__all__ = ["DEFAULT_INSTALLERS", "Sandbox", "SandboxConfig", "SandboxControl"]
