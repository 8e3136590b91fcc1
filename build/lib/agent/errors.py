"""One exception tree for the whole agent and the Command Centre tools.

::

    AgentError                  anything a person can cause or fix; message is one sentence
     +-- ConfigError            the TOML file, a field, a bundle or a key file is wrong
     +-- CameraError            a camera cannot be opened or read
     +-- MaskError              a share region is invalid or the mask cannot be applied
     +-- EncodeError            a frame cannot be encoded
     +-- BrokerError            the MQTT broker cannot be reached or refused us
     +-- IdentityError          the box is not enrolled or its keys are unreadable
     +-- Rejected               a message failed verification (signature, replay, target...)
          +-- AuthenticationFailed   decryption or signature check failed (deliberately opaque)

Errors from OpenCV, paho-mqtt, cryptography and the OS are translated where they enter,
with ``raise X(msg) from exc``. Messages never carry secrets (camera passwords, keys).
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the product raises on purpose."""


class ConfigError(AgentError):
    """The configuration (file, field, bundle) is invalid."""


class CameraError(AgentError):
    """A camera cannot be opened or read."""


class MaskError(AgentError):
    """A share region is invalid, or the mask could not be applied."""


class EncodeError(AgentError):
    """A frame could not be encoded."""


class BrokerError(AgentError):
    """The MQTT broker is unreachable or refused the connection."""


class IdentityError(AgentError):
    """The box is not enrolled, or its key files are missing or unreadable."""


class Rejected(AgentError):
    """A received message failed verification and was not acted on."""


class AuthenticationFailed(Rejected):
    """A signature or an AEAD tag did not verify. Deliberately carries no detail."""

    def __init__(self, message: str = "authentication failed") -> None:
        super().__init__(message)
