"""What a device answer carries of the entities that describe the same machine (pure; fed by the sync).

- **Autopilot identity**: matched by the Intune managed device id it names (`managedDeviceId`), else by
  serial number. A placeholder serial ("To be filled by O.E.M.", "0000000") never matches, and neither
  does a serial that two identities share: either would pair unrelated machines.
- **Entra ID device**: matched by `deviceId`, the id Intune reports as the device's `azureADDeviceId`.
- **Vulnerabilities**: the Defender machine joined by Entra device id (`shared.mapping.devices`) and
  its vulnerability summary (`shared.mapping.vulnerabilities.VulnerabilityTally`).
https://learn.microsoft.com/graph/api/resources/intune-enrollment-windowsautopilotdeviceidentity
https://learn.microsoft.com/graph/api/resources/device
"""

from __future__ import annotations

from typing import Any

from shared.mapping.devices import is_placeholder_serial, join_key, normalise_serial

AUTOPILOT_SUMMARY: tuple[str, ...] = ("id", "groupTag", "enrollmentState", "purchaseOrderIdentifier",
                                      "lastContactedDateTime", "matchedBy")
ENTRA_SUMMARY: tuple[str, ...] = ("id", "trustType", "isCompliant", "accountEnabled",
                                  "approximateLastSignInDateTime", "registrationDateTime")

_AMBIGUOUS: dict[str, Any] = {}


class AutopilotIndex:
    """Mapped Autopilot identities by the managed device id and the (trusted) serial they carry."""

    def __init__(self) -> None:
        self._by_device: dict[str, dict[str, Any]] = {}
        self._by_serial: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._by_device) + len(self._by_serial)

    def add(self, identity: dict[str, Any]) -> None:
        summary = {name: identity.get(name) for name in AUTOPILOT_SUMMARY[:-1]}
        device = identity.get("managedDeviceId")
        if device:
            self._by_device[device] = summary
        serial = identity.get("serialNumber")
        if serial and not identity.get("serialPlaceholder"):
            key = serial.upper()
            self._by_serial[key] = _AMBIGUOUS if key in self._by_serial else summary

    def match(self, raw_device: dict[str, Any]) -> dict[str, Any] | None:
        device_id = join_key(raw_device.get("id"))
        found = self._by_device.get(device_id) if device_id else None
        if found is not None:
            return {**found, "matchedBy": "managedDeviceId"}
        serial = raw_device.get("serialNumber")
        serial = normalise_serial(serial) if isinstance(serial, str) else None
        if serial is None or is_placeholder_serial(serial):
            return None
        found = self._by_serial.get(serial.upper())
        if not found:  # none, or two identities share the serial
            return None
        return {**found, "matchedBy": "serialNumber"}


class EntraIndex:
    """Mapped Entra ID devices by their `deviceId`."""

    def __init__(self) -> None:
        self._by_device_id: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._by_device_id)

    def add(self, device: dict[str, Any]) -> None:
        key = device.get("deviceId")
        if key:
            self._by_device_id[key] = {name: device.get(name) for name in ENTRA_SUMMARY}

    def match(self, raw_device: dict[str, Any]) -> dict[str, Any] | None:
        aad = raw_device.get("azureADDeviceId")
        key = join_key(aad) if isinstance(aad, str) else None
        return self._by_device_id.get(key) if key else None
