"""Devices: inventory, transports (local subprocess, SSH), the agent clients (one agent process
per session over one channel, or one per request), locks and sessions.

`edgeprune.device.ssh` is the only module that imports fabric/paramiko (loaded lazily). Every
remote argv is logged at DEBUG on the ``edgeprune.device`` logger.
"""

from edgeprune.device.agent import AgentClient, SessionAgent, agent_sha256, agent_source
from edgeprune.device.inventory import LOCAL, DeviceSpec, Inventory, local_device, validate_name
from edgeprune.device.local import LocalTransport
from edgeprune.device.lock import DeviceLock
from edgeprune.device.session import DeviceSession, open_transport
from edgeprune.device.transport import CommandResult, Transport, download_verified, upload_verified

__all__ = [
    "LOCAL",
    "AgentClient",
    "CommandResult",
    "DeviceLock",
    "DeviceSession",
    "DeviceSpec",
    "Inventory",
    "LocalTransport",
    "SessionAgent",
    "Transport",
    "agent_sha256",
    "agent_source",
    "download_verified",
    "local_device",
    "open_transport",
    "upload_verified",
    "validate_name",
]
