"""Deterministic, realistic tenant data: Intune managed devices, detected apps, Defender machines and their
vulnerabilities, Windows Autopilot identities, Entra ID devices and subscribed SKUs.

Everything comes from a ``random.Random`` seeded by (scenario seed, tenant key), so the same
scenario always yields the same data. Field names and value sets follow Graph v1.0
(https://learn.microsoft.com/graph/api/resources/intune-devices-manageddevice?view=graph-rest-1.0)
and Defender's machine entity
(https://learn.microsoft.com/defender-endpoint/api/machine).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

ZERO_GUID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_SERIALS = ("Default string", "To be filled by O.E.M.", "0", "")
COMPLIANCE_STATES = (
    ("compliant", 70),
    ("noncompliant", 12),
    ("inGracePeriod", 5),
    ("unknown", 5),
    ("conflict", 3),
    ("error", 2),
    ("configManager", 3),
)

FIRST_NAMES = (
    "Adele",
    "Alex",
    "Bianca",
    "Chen",
    "Diego",
    "Emma",
    "François",
    "Grace",
    "Hiro",
    "Isabella",
    "Jonas",
    "José",
    "Kai",
    "Lena",
    "Łukasz",
    "Maya",
    "Noah",
    "Olivia",
    "Priya",
    "Quentin",
    "Rosa",
    "Søren",
    "Tariq",
    "Uma",
    "Viktor",
    "Wei",
    "Xavier",
    "Yuki",
    "Zoë",
    "Ana",
    "Ben",
    "Chloé",
    "Dmitri",
    "Elif",
    "Fatima",
    "Gustav",
    "Hana",
    "Ivan",
    "Julia",
    "Kenji",
)
LAST_NAMES = (
    "Smith",
    "García",
    "Müller",
    "Nakamura",
    "O'Brien",
    "Kowalski",
    "Dubois",
    "Rossi",
    "Jensen",
    "Patel",
    "Kim",
    "Novak",
    "Silva",
    "Andersson",
    "Yılmaz",
    "Chen",
    "Brown",
    "Lopez",
    "Schmidt",
    "Tanaka",
    "Nguyen",
    "Fischer",
    "Wilson",
    "Costa",
    "Ivanova",
)


@dataclass(frozen=True)
class HardwareModel:
    platform: str  # windows | macos | ios | android
    manufacturer: str
    model: str
    serial_style: str
    weight: int


HARDWARE: tuple[HardwareModel, ...] = (
    HardwareModel("windows", "Dell Inc.", "Latitude 5440", "dell", 9),
    HardwareModel("windows", "Dell Inc.", "Latitude 7440", "dell", 6),
    HardwareModel("windows", "Dell Inc.", "OptiPlex 7010", "dell", 4),
    HardwareModel("windows", "HP", "HP EliteBook 840 G9 Notebook PC", "hp", 7),
    HardwareModel("windows", "HP", "HP ProBook 450 G10 Notebook PC", "hp", 4),
    HardwareModel("windows", "LENOVO", "20XXS3JC00", "lenovo", 5),  # ThinkPad T14 Gen 2 machine type
    HardwareModel("windows", "LENOVO", "21CB007MUS", "lenovo", 5),  # ThinkPad X1 Carbon Gen 10
    HardwareModel("windows", "Microsoft Corporation", "Surface Laptop 5", "surface", 4),
    HardwareModel("windows", "Microsoft Corporation", "Surface Pro 9", "surface", 3),
    HardwareModel("windows", "System manufacturer", "System Product Name", "whitebox", 1),
    HardwareModel("windows", "Microsoft Corporation", "Virtual Machine", "vm", 1),
    HardwareModel("macos", "Apple", "MacBook Pro (14-inch, 2023)", "apple", 5),
    HardwareModel("macos", "Apple", "MacBook Air (M2, 2022)", "apple", 6),
    HardwareModel("macos", "Apple", "iMac (24-inch, M3, 2023)", "apple", 1),
    HardwareModel("ios", "Apple", "iPhone 15", "apple", 6),
    HardwareModel("ios", "Apple", "iPhone 14 Pro", "apple", 4),
    HardwareModel("ios", "Apple", "iPhone SE (3rd generation)", "apple", 2),
    HardwareModel("ios", "Apple", "iPad Air (5th generation)", "apple", 2),
    HardwareModel("android", "samsung", "SM-S918B", "samsung", 4),  # Galaxy S23 Ultra
    HardwareModel("android", "samsung", "SM-A546B", "samsung", 4),  # Galaxy A54 5G
    HardwareModel("android", "samsung", "SM-X700", "samsung", 1),  # Galaxy Tab S8
    HardwareModel("android", "Google", "Pixel 8", "google", 3),
    HardwareModel("android", "Zebra Technologies", "TC52", "zebra", 1),
)
PLATFORM_WEIGHTS = {"windows": 60, "macos": 12, "ios": 15, "android": 13}
_PLATFORM_PAIRS = tuple(PLATFORM_WEIGHTS.items())

OS_VERSIONS = {
    "windows": (
        "10.0.19045.4291",
        "10.0.19045.5011",
        "10.0.22631.3447",
        "10.0.22631.4317",
        "10.0.22621.3296",
        "10.0.26100.2033",
    ),
    "macos": ("13.6.6", "14.4.1", "14.6.1", "15.0.1", "15.1"),
    "ios": ("16.7.8", "17.4.1", "17.6.1", "18.0.1", "18.1"),
    "ipados": ("17.4.1", "17.6.1", "18.1"),
    "android": ("12", "13", "14", "14", "15"),
}
OPERATING_SYSTEM = {"windows": "Windows", "macos": "macOS", "ios": "iOS", "android": "Android"}
DETECTED_PLATFORM = {"windows": "windows", "macos": "macOS", "ios": "ios", "android": "androidWorkProfile"}
MANAGEMENT_AGENTS = {
    "windows": (("mdm", 80), ("configurationManagerClientMdm", 15), ("easMdm", 5)),
    "macos": (("mdm", 100),),
    "ios": (("mdm", 90), ("easMdm", 10)),
    "android": (("mdm", 100),),
}
ENROLLMENT_TYPES = {
    "windows": (
        "windowsAzureADJoin",
        "windowsAutoEnrollment",
        "windowsCoManagement",
        "windowsAzureADJoinUsingDeviceAuth",
    ),
    "macos": ("appleBulkWithUser", "userEnrollment"),
    "ios": ("appleBulkWithUser", "userEnrollment", "appleUserEnrollment"),
    "android": ("userEnrollment",),
}

# (displayName, publisher, versions, size in bytes, popularity 0..1)
APP_CATALOG: dict[str, tuple[tuple[str, str, tuple[str, ...], int, float], ...]] = {
    "windows": (
        ("Microsoft Edge", "Microsoft Corporation", ("130.0.2849.56", "129.0.2792.89"), 0, 0.98),
        ("Microsoft 365 Apps for enterprise - en-us", "Microsoft Corporation", ("16.0.17928.20216",), 0, 0.9),
        ("Microsoft Teams", "Microsoft", ("24243.1309.3132.617",), 0, 0.85),
        ("Microsoft OneDrive", "Microsoft Corporation", ("24.201.1006.0005",), 0, 0.9),
        ("Google Chrome", "Google LLC", ("130.0.6723.70", "129.0.6668.101"), 0, 0.6),
        ("Mozilla Firefox (x64 en-US)", "Mozilla", ("131.0.3",), 0, 0.2),
        ("7-Zip 23.01 (x64)", "Igor Pavlov", ("23.01",), 0, 0.35),
        ("Adobe Acrobat (64-bit)", "Adobe", ("24.003.20180",), 0, 0.5),
        ("Notepad++ (64-bit x64)", "Notepad++ Team", ("8.6.9",), 0, 0.15),
        ("VLC media player", "VideoLAN", ("3.0.21",), 0, 0.1),
        (
            "Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.40.33810",
            "Microsoft Corporation",
            ("14.40.33810.0",),
            0,
            0.8,
        ),
        ("Zoom Workplace (64-bit)", "Zoom Video Communications, Inc.", ("6.2.5 (49000)",), 0, 0.3),
        ("Cisco Secure Client - AnyConnect VPN", "Cisco Systems, Inc.", ("5.1.2.42",), 0, 0.25),
        ("Slack", "Slack Technologies Inc.", ("4.41.97",), 0, 0.2),
        ("Microsoft Visual Studio Code (User)", "Microsoft Corporation", ("1.94.2",), 0, 0.12),
        ("Dell Command | Update for Windows Universal", "Dell Inc.", ("5.4.0",), 0, 0.3),
        ("HP Wolf Security", "HP Inc.", ("4.6.5.297",), 0, 0.2),
        ("Lenovo Vantage Service", "Lenovo Group Ltd.", ("3.13.43.0",), 0, 0.15),
        ("Company Portal", "Microsoft Corporation", ("11.2.1002.0",), 0, 0.7),
        ("Python 3.12.2 (64-bit)", "Python Software Foundation", ("3.12.2150.0",), 0, 0.05),
        ("Git", "The Git Development Community", ("2.47.0",), 0, 0.06),
        ("Citrix Workspace 2409", "Citrix Systems, Inc.", ("24.9.0.133",), 0, 0.1),
        ("KeePass Password Safe 2.57.1", "Dominik Reichl", ("2.57.1",), 0, 0.04),
        ("Java 8 Update 431 (64-bit)", "Oracle Corporation", ("8.0.4310.10",), 0, 0.08),
        ("Power BI Desktop (x64)", "Microsoft Corporation", ("2.137.1102.0",), 0, 0.06),
    ),
    "macos": (
        ("Microsoft Outlook", "Microsoft Corporation", ("16.90",), 1_932_165_120, 0.9),
        ("Microsoft Word", "Microsoft Corporation", ("16.90",), 2_410_663_936, 0.85),
        ("Microsoft Teams", "Microsoft Corporation", ("24277.3502.3161.3207",), 561_987_584, 0.8),
        ("Google Chrome", "Google LLC", ("130.0.6723.70",), 1_306_562_560, 0.6),
        ("Safari", "Apple Inc.", ("18.1",), 17_825_792, 1.0),
        ("zoom.us", "Zoom Video Communications, Inc.", ("6.2.5 (41297)",), 344_981_504, 0.3),
        ("Slack", "Slack Technologies, Inc.", ("4.41.97",), 430_899_200, 0.3),
        ("Company Portal", "Microsoft Corporation", ("5.2409.1",), 62_914_560, 0.95),
        ("Xcode", "Apple Inc.", ("16.0",), 11_890_917_376, 0.05),
        ("1Password 7", "AgileBits Inc.", ("7.9.11",), 94_371_840, 0.2),
    ),
    "ios": (
        ("Microsoft Authenticator", "Microsoft Corporation", ("6.8.15",), 213_909_504, 0.9),
        ("Microsoft Outlook", "Microsoft Corporation", ("4.2441.0",), 321_912_832, 0.85),
        ("Microsoft Teams", "Microsoft Corporation", ("6.20.1",), 265_289_728, 0.75),
        ("Intune Company Portal", "Microsoft Corporation", ("5.2409.1",), 55_574_528, 0.95),
        ("WhatsApp Messenger", "WhatsApp Inc.", ("24.20.79",), 276_824_064, 0.5),
        ("Slack", "Slack Technologies, Inc.", ("24.10.10",), 201_326_592, 0.2),
    ),
    "android": (
        ("Microsoft Authenticator", "Microsoft Corporation", ("6.2410.6867",), 0, 0.9),
        ("Intune Company Portal", "Microsoft Corporation", ("5.0.6391.0",), 0, 0.95),
        ("Microsoft Outlook", "Microsoft Corporation", ("4.2441.1",), 0, 0.8),
        ("Microsoft Teams", "Microsoft Corporation", ("1416/1.0.0.2024183501",), 0, 0.7),
        ("Microsoft Defender: Antivirus", "Microsoft Corporation", ("1.0.7001.0101",), 0, 0.4),
    ),
}
SYNTH_VENDORS = (
    "Contoso",
    "Fabrikam",
    "Northwind",
    "Adventure Works",
    "Tailspin",
    "Litware",
    "Proseware",
    "Wide World Importers",
    "Woodgrove",
    "Alpine Ski House",
    "Coho",
    "Fourth Coffee",
    "Lamna",
    "Margie's Travel",
    "Trey Research",
    "Wingtip",
    "Blue Yonder",
    "Humongous Insurance",
)
SYNTH_PRODUCTS = (
    "Agent",
    "Connector",
    "Viewer",
    "Client",
    "Updater",
    "Toolkit",
    "Studio",
    "Sync",
    "Desktop",
    "Helper",
    "Launcher",
    "Runtime",
    "Driver Package",
    "Add-in",
    "Monitor",
    "Scanner",
    "Suite",
)
SYNTH_QUALIFIERS = ("", " Pro", " Enterprise", " Lite", " (x64)", " (x86)", " 2023", " 2024", " Plus", " LTS")


def fast_guid(rng: random.Random) -> str:
    """A version-4-looking GUID from ``rng`` (uuid.uuid4 would not be reproducible)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


_CUMULATIVE: dict[int, tuple[list[str], list[int]]] = {}


def _weighted(rng: random.Random, pairs: tuple[tuple[str, int], ...]) -> str:
    # Cumulative weights are cached: ``choices(weights=...)`` rebuilds them on every call.
    cached = _CUMULATIVE.get(id(pairs))
    if cached is None:
        total = 0
        cumulative = []
        for _, weight in pairs:
            total += weight
            cumulative.append(total)
        cached = ([p[0] for p in pairs], cumulative)
        _CUMULATIVE[id(pairs)] = cached
    return rng.choices(cached[0], cum_weights=cached[1])[0]


def _serial(rng: random.Random, style: str) -> str:
    alnum = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    if style == "dell":
        return "".join(rng.choices(alnum, k=7))
    if style == "hp":
        return "5CG" + "".join(rng.choices(alnum, k=7))
    if style == "lenovo":
        return "PF" + "".join(rng.choices(alnum, k=6))
    if style == "surface":
        return "".join(rng.choices("0123456789", k=12))
    if style == "apple":
        return rng.choice(("C02", "FVF", "H4", "DMP", "F9F")) + "".join(rng.choices(alnum, k=7))
    if style == "samsung":
        return "R5" + "".join(rng.choices(alnum, k=9))
    if style == "google":
        return "".join(rng.choices(alnum, k=14))
    if style == "zebra":
        return "".join(rng.choices("0123456789", k=14))
    if style == "vm":
        return "-".join("".join(rng.choices("0123456789", k=4)) for _ in range(7))
    return rng.choice(PLACEHOLDER_SERIALS[:2])


def _mac(rng: random.Random) -> str:
    return f"{rng.getrandbits(48):012X}"


def _dt(value: datetime) -> str:
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"  # faster than strftime


class DeviceFactory:
    """Builds managedDevice objects (all v1.0 properties) for one tenant."""

    def __init__(self, rng: random.Random, domain: str, now: datetime, name_prefix: str) -> None:
        self.rng = rng
        self.domain = domain
        self.now = now
        self.prefix = name_prefix
        self._by_platform: dict[str, list[HardwareModel]] = {}
        for hw in HARDWARE:
            self._by_platform.setdefault(hw.platform, []).append(hw)
        self._by_platform_cum: dict[str, tuple[list[HardwareModel], list[int]]] = {}
        for platform_name, models in self._by_platform.items():
            running = 0
            cumulative: list[int] = []
            for hw in models:
                running += hw.weight
                cumulative.append(running)
            self._by_platform_cum[platform_name] = (models, cumulative)
        self._counter = 0
        user_count = 40
        self.users = [self._user(i) for i in range(user_count)]

    def _user(self, index: int) -> tuple[str, str, str, str]:
        rng = self.rng
        first = FIRST_NAMES[(index * 7 + rng.randrange(len(FIRST_NAMES))) % len(FIRST_NAMES)]
        last = rng.choice(LAST_NAMES)
        ascii_first = first.encode("ascii", "ignore").decode() or "user"
        ascii_last = last.replace("'", "").encode("ascii", "ignore").decode() or "user"
        upn = f"{ascii_first.lower()}.{ascii_last.lower()}{index if index >= len(FIRST_NAMES) else ''}@{self.domain}"
        return fast_guid(rng), upn, f"{first} {last}", first

    def device(self, platform: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        rng = self.rng
        self._counter += 1
        if platform is None:
            platform = _weighted(rng, _PLATFORM_PAIRS)
        models, cumulative = self._by_platform_cum[platform]
        hw = rng.choices(models, cum_weights=cumulative)[0]
        shared = (platform == "android" and hw.manufacturer == "Zebra Technologies") or rng.random() < 0.04
        user_id, upn, user_display, first = ("", "", "", "") if shared else rng.choice(self.users)
        os_key = "ipados" if hw.model.startswith("iPad") else platform
        os_version = rng.choice(OS_VERSIONS[os_key])
        operating_system = "iPadOS" if os_key == "ipados" else OPERATING_SYSTEM[platform]
        if platform == "windows":
            name = (
                f"DESKTOP-{''.join(rng.choices('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', k=7))}"
                if rng.random() < 0.3
                else f"{self.prefix}-{'LT' if 'Book' in hw.model or 'Latitude' in hw.model or 'Laptop' in hw.model else 'PC'}-{self._counter:04d}"
            )
            if self._counter % 53 == 7:
                name = "会議室-PC"
        elif platform == "macos":
            kind = "MacBook Pro" if "Pro" in hw.model else ("iMac" if "iMac" in hw.model else "MacBook Air")
            name = (
                f"{first or 'Shared'}\u2019s {kind}".replace(" ", "-", 1)
                if first
                else f"{self.prefix}-MAC-{self._counter:03d}"
            )
        elif platform == "ios":
            kind = "iPad" if hw.model.startswith("iPad") else "iPhone"
            name = f"{first}\u2019s {kind}" if first else f"{kind}-{self._counter:03d}"
        else:
            name = (
                f"{upn.split('@')[0]}_AndroidForWork_{self.now.month}/{self.now.day}/{self.now.year}_{rng.randrange(1, 12)}:{rng.randrange(10, 59)} AM"
                if upn
                else f"{hw.manufacturer}_{hw.model}_{self._counter}"
            )
        serial = _serial(rng, hw.serial_style)
        if rng.random() < 0.02:
            serial = rng.choice(PLACEHOLDER_SERIALS)
        enrolled = self.now - timedelta(seconds=rng.randrange(86_400 * 3, 86_400 * 1000))
        stale = rng.random() < 0.06
        last_sync_age = rng.randrange(86_400 * 31, 86_400 * 150) if stale else rng.randrange(60, 86_400 * 7)
        last_sync = max(enrolled + timedelta(minutes=5), self.now - timedelta(seconds=last_sync_age))
        is_mobile = platform in ("ios", "android")
        storage_gb = rng.choice((64, 128, 256) if is_mobile else (256, 512, 512, 1024))
        total_storage = storage_gb * 1_000_000_000 - rng.randrange(
            0, 9_000_000_000 if storage_gb > 64 else 4_000_000_000
        )
        free_storage = int(total_storage * rng.uniform(0.05, 0.8))
        memory = rng.choice((4, 6, 8) if is_mobile else (8, 16, 16, 32)) * 1024**3
        aad_device_id = ZERO_GUID if rng.random() < 0.02 else fast_guid(rng)
        compliance = _weighted(rng, COMPLIANCE_STATES)
        owner = "personal" if (is_mobile and rng.random() < 0.3) else "company"
        imei = (
            "".join(rng.choices("0123456789", k=15))
            if (is_mobile and not hw.model.startswith("iPad") and hw.manufacturer != "Zebra Technologies")
            else ""
        )
        device: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.managedDevice",
            "id": fast_guid(rng),
            "userId": user_id,
            "deviceName": name,
            "managedDeviceOwnerType": owner,
            "deviceActionResults": [],
            "enrolledDateTime": _dt(enrolled),
            "lastSyncDateTime": _dt(last_sync),
            "operatingSystem": operating_system,
            "complianceState": compliance,
            "jailBroken": "False" if is_mobile or platform == "macos" else "Unknown",
            "managementAgent": _weighted(rng, MANAGEMENT_AGENTS[platform]),
            "osVersion": os_version,
            "easActivated": rng.random() < 0.3,
            "easDeviceId": "".join(rng.choices("ABCDEF0123456789", k=32)) if is_mobile else "",
            "easActivationDateTime": "0001-01-01T00:00:00Z",
            "azureADRegistered": aad_device_id != ZERO_GUID,
            "deviceEnrollmentType": rng.choice(ENROLLMENT_TYPES[platform]),
            "activationLockBypassCode": None,
            "emailAddress": upn,
            "azureADDeviceId": aad_device_id,
            "deviceRegistrationState": "registered" if aad_device_id != ZERO_GUID else "notRegistered",
            "deviceCategoryDisplayName": "Unknown Category",
            "isSupervised": platform == "ios" and owner == "company",
            "exchangeLastSuccessfulSyncDateTime": "0001-01-01T00:00:00Z",
            "exchangeAccessState": "none",
            "exchangeAccessStateReason": "none",
            "remoteAssistanceSessionUrl": None,
            "remoteAssistanceSessionErrorDetails": None,
            "isEncrypted": rng.random() < (0.92 if compliance == "compliant" else 0.6),
            "userPrincipalName": upn,
            "model": hw.model,
            "manufacturer": hw.manufacturer,
            "imei": imei,
            "complianceGracePeriodExpirationDateTime": "9999-12-31T23:59:59Z",
            "serialNumber": serial,
            "phoneNumber": "" if not imei else f"+1425555{rng.randrange(1000, 9999)}",
            "androidSecurityPatchLevel": f"2024-{rng.randrange(1, 11):02d}-01" if platform == "android" else "",
            "userDisplayName": user_display,
            "configurationManagerClientEnabledFeatures": None,
            "wiFiMacAddress": _mac(rng),
            "deviceHealthAttestationState": None,
            "subscriberCarrier": rng.choice(("T-Mobile", "Verizon", "Vodafone", "")) if imei else "",
            "meid": imei[:14] if imei else "",
            "totalStorageSpaceInBytes": total_storage,
            "freeStorageSpaceInBytes": free_storage,
            "managedDeviceName": f"{upn.split('@')[0] or 'device'}_{operating_system}_{enrolled.month}/{enrolled.day}/{enrolled.year}_{enrolled.hour}:{enrolled.minute:02d}",
            "partnerReportedThreatState": "unknown",
            "requireUserEnrollmentApproval": None,
            "managementCertificateExpirationDate": _dt(enrolled + timedelta(days=365)),
            "iccid": None,
            "udid": None,
            "notes": None,
            "ethernetMacAddress": _mac(rng) if platform in ("windows", "macos") and rng.random() < 0.5 else None,
            "physicalMemoryInBytes": memory,
        }
        if overrides:
            device.update(overrides)
        return device


def generate_devices(
    rng: random.Random, domain: str, now: datetime, count: int, prefix: str
) -> tuple[DeviceFactory, list[dict[str, Any]]]:
    factory = DeviceFactory(rng, domain, now, prefix)
    devices = [factory.device() for _ in range(count)]
    # One duplicated serial across two devices: happens with refurbished boards and re-imaged VMs.
    if count >= 10:
        a, b = rng.sample(range(count), 2)
        if devices[a]["serialNumber"] not in PLACEHOLDER_SERIALS:
            devices[b]["serialNumber"] = devices[a]["serialNumber"]
            devices[b]["manufacturer"] = devices[a]["manufacturer"]
    return factory, devices


def _platform_of(device: dict[str, Any]) -> str:
    os_name = str(device.get("operatingSystem", "")).lower()
    if os_name.startswith("windows"):
        return "windows"
    if os_name == "macos":
        return "macos"
    if os_name in ("ios", "ipados"):
        return "ios"
    return "android"


def _detected_app_id(rng: random.Random) -> str:
    # Real detectedApp ids are 44 hex characters (a hashed program id).
    return f"{rng.getrandbits(176):044x}"


def generate_detected_apps(
    rng: random.Random, devices: list[dict[str, Any]], count: int
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Apps with a consistent app -> devices mapping; deviceCount is the mapping's size."""
    pools: dict[str, list[str]] = {}
    for device in devices:
        pools.setdefault(_platform_of(device), []).append(device["id"])
    products: list[tuple[str, str, str, tuple[str, ...], int, float]] = []
    platforms_present = [p for p in ("windows", "macos", "ios", "android") if pools.get(p)] or ["windows"]
    for platform in platforms_present:
        for name, publisher, versions, size, popularity in APP_CATALOG[platform]:
            products.append((platform, name, publisher, versions, size, popularity))
    products.sort(key=lambda p: -p[5])
    index = 0
    planned = sum(len(p[3]) for p in products)
    while planned < count:
        platform = "windows" if rng.random() < 0.8 or "macos" not in pools else "macos"
        vendor = SYNTH_VENDORS[index % len(SYNTH_VENDORS)]
        product = SYNTH_PRODUCTS[(index // len(SYNTH_VENDORS)) % len(SYNTH_PRODUCTS)]
        qualifier = SYNTH_QUALIFIERS[(index // (len(SYNTH_VENDORS) * len(SYNTH_PRODUCTS))) % len(SYNTH_QUALIFIERS)]
        suffix = (
            f" {index // (len(SYNTH_VENDORS) * len(SYNTH_PRODUCTS) * len(SYNTH_QUALIFIERS)) + 1}"
            if index >= len(SYNTH_VENDORS) * len(SYNTH_PRODUCTS) * len(SYNTH_QUALIFIERS)
            else ""
        )
        versions = tuple(
            f"{rng.randrange(1, 25)}.{rng.randrange(0, 10)}.{rng.randrange(0, 5000)}"
            for _ in range(1 if rng.random() < 0.8 else 2)
        )
        popularity = min(0.4, 1.5 / (index + 6)) * rng.uniform(0.5, 1.5)
        products.append((platform, f"{vendor} {product}{qualifier}{suffix}", f"{vendor} Ltd.", versions, 0, popularity))
        planned += len(versions)
        index += 1
    apps: list[dict[str, Any]] = []
    mapping: dict[str, list[str]] = {}
    for platform, name, publisher, versions, size, popularity in products:
        if len(apps) >= count:
            break
        pool = pools.get(platform, [])
        holders = rng.sample(pool, max(1, min(len(pool), round(popularity * len(pool))))) if pool else []
        split = len(versions)
        for v_index, version in enumerate(versions):
            if len(apps) >= count:
                break
            part = holders[v_index::split]
            if pool and not part:
                part = [rng.choice(pool)]
            app_id = _detected_app_id(rng)
            apps.append(
                {
                    "@odata.type": "#microsoft.graph.detectedApp",
                    "id": app_id,
                    "displayName": name,
                    "version": version,
                    "sizeInByte": size
                    if size
                    else (rng.randrange(2, 900) * 1_048_576 if platform == "windows" and rng.random() < 0.3 else 0),
                    "deviceCount": len(part),
                    "platform": DETECTED_PLATFORM[platform],
                    "publisher": publisher,
                }
            )
            mapping[app_id] = list(part)
    return apps, mapping


HEALTH_STATUSES = (
    ("Active", 82),
    ("Inactive", 10),
    ("ImpairedCommunication", 3),
    ("NoSensorData", 3),
    ("NoSensorDataImpairedCommunication", 1),
    ("Unknown", 1),
)
RISK_SCORES = (("None", 30), ("Informational", 10), ("Low", 30), ("Medium", 20), ("High", 10))
EXPOSURE_LEVELS = (("None", 10), ("Low", 40), ("Medium", 40), ("High", 10))
WINDOWS_BUILDS = {
    "10.0.19045": (19045, "22H2", "Windows10"),
    "10.0.22631": (22631, "23H2", "Windows11"),
    "10.0.22621": (22621, "22H2", "Windows11"),
    "10.0.26100": (26100, "24H2", "Windows11"),
}


def _ip(rng: random.Random) -> tuple[str, str]:
    return (
        f"10.{rng.randrange(0, 255)}.{rng.randrange(0, 255)}.{rng.randrange(2, 254)}",
        f"{rng.choice((20, 40, 52, 98, 167, 203))}.{rng.randrange(0, 255)}.{rng.randrange(0, 255)}.{rng.randrange(2, 254)}",
    )


def machine_for_device(rng: random.Random, device: dict[str, Any], now: datetime) -> dict[str, Any]:
    platform = _platform_of(device)
    enrolled = datetime.fromisoformat(device["enrolledDateTime"])
    last_sync = datetime.fromisoformat(device["lastSyncDateTime"])
    if platform == "windows":
        build_key = ".".join(str(device["osVersion"]).split(".")[:3])
        os_build, version, os_platform = WINDOWS_BUILDS.get(build_key, (19045, "22H2", "Windows10"))
    elif platform == "macos":
        os_build, version, os_platform = None, device["osVersion"], "macOS"
    elif platform == "ios":
        os_build, version, os_platform = None, device["osVersion"], "iOS"
    else:
        os_build, version, os_platform = None, device["osVersion"], "Android"
    aad = device.get("azureADDeviceId")
    local_ip, public_ip = _ip(rng)
    mac = str(device.get("wiFiMacAddress") or "")
    dns = str(device["deviceName"]).lower() if platform in ("windows", "macos") else str(device["deviceName"])
    return {
        "id": hashlib.sha1(f"{device['id']}:{rng.random()}".encode(), usedforsecurity=False).hexdigest(),
        "computerDnsName": dns,
        "firstSeen": _dt(enrolled + timedelta(minutes=rng.randrange(5, 600))),
        "lastSeen": _dt(min(now, last_sync + timedelta(minutes=rng.randrange(-120, 120)))),
        "osPlatform": os_platform,
        "version": version,
        "osProcessor": "arm64"
        if "Surface Pro" in str(device.get("model")) or platform in ("ios", "android")
        else "x64",
        "lastIpAddress": local_ip,
        "lastExternalIpAddress": public_ip,
        "osBuild": os_build,
        "healthStatus": _weighted(rng, HEALTH_STATUSES),
        "rbacGroupId": 0,
        "rbacGroupName": "UnassignedGroup",
        "riskScore": _weighted(rng, RISK_SCORES),
        "exposureLevel": _weighted(rng, EXPOSURE_LEVELS),
        "isAadJoined": bool(aad and aad != "00000000-0000-0000-0000-000000000000"),
        "aadDeviceId": aad if aad and aad != "00000000-0000-0000-0000-000000000000" else None,
        "machineTags": [],
        "onboardingStatus": "Onboarded",
        "deviceValue": "Normal",
        "ipAddresses": [
            {
                "ipAddress": local_ip,
                "macAddress": mac,
                "type": "Ethernet" if platform == "windows" else "Other",
                "operationalStatus": "Up",
            }
        ],
    }


def server_machine(rng: random.Random, index: int, prefix: str, now: datetime, *, orphan_aad: bool) -> dict[str, Any]:
    """A machine Defender sees that Intune does not manage (server, or a device removed from Intune)."""
    local_ip, public_ip = _ip(rng)
    first = now - timedelta(days=rng.randrange(30, 700))
    name = f"{prefix.lower()}-srv-{index:02d}" if not orphan_aad else f"desktop-{rng.getrandbits(28):07x}"
    return {
        "id": hashlib.sha1(f"{prefix}:{index}:{rng.random()}".encode(), usedforsecurity=False).hexdigest(),
        "computerDnsName": name,
        "firstSeen": _dt(first),
        "lastSeen": _dt(now - timedelta(minutes=rng.randrange(1, 60 * 24 * 10))),
        "osPlatform": "Windows10" if orphan_aad else rng.choice(("WindowsServer2022", "WindowsServer2019", "Linux")),
        "version": "22H2" if orphan_aad else "",
        "osProcessor": "x64",
        "lastIpAddress": local_ip,
        "lastExternalIpAddress": public_ip,
        "osBuild": 19045 if orphan_aad else 20348,
        "healthStatus": _weighted(rng, HEALTH_STATUSES),
        "rbacGroupId": 0,
        "rbacGroupName": "UnassignedGroup",
        "riskScore": _weighted(rng, RISK_SCORES),
        "exposureLevel": _weighted(rng, EXPOSURE_LEVELS),
        "isAadJoined": orphan_aad,
        "aadDeviceId": fast_guid(rng) if orphan_aad else None,
        "machineTags": ["server"] if not orphan_aad else [],
        "onboardingStatus": "Onboarded",
        "deviceValue": "High" if not orphan_aad else "Normal",
        "ipAddresses": [
            {"ipAddress": local_ip, "macAddress": _mac(rng), "type": "Ethernet", "operationalStatus": "Up"}
        ],
    }


def generate_machines(
    rng: random.Random, devices: list[dict[str, Any]], coverage: float, defender_only: int, prefix: str, now: datetime
) -> list[dict[str, Any]]:
    machines: list[dict[str, Any]] = []
    for device in devices:
        # Coverage is per device whatever the platform (MDE onboards iOS/Android too).
        if rng.random() < coverage:
            machines.append(machine_for_device(rng, device, now))
    for index in range(defender_only):
        machines.append(server_machine(rng, index + 1, prefix, now, orphan_aad=index % 3 == 2))
    return machines


# --- Windows Autopilot device identities -----------------------------------------------------
# Properties, names and types as Graph v1.0 gives them:
# https://learn.microsoft.com/graph/api/resources/intune-enrollment-windowsautopilotdeviceidentity?view=graph-rest-1.0
# v1.0 has no `azureAdDeviceId` and its enrollmentState no `blocked`; both exist only in beta
# (https://learn.microsoft.com/graph/api/resources/intune-enrollment-enrollmentstate?view=graph-rest-1.0).
AUTOPILOT_ODATA_TYPE = "#microsoft.graph.windowsAutopilotDeviceIdentity"
# Intune writes an unset DateTimeOffset as the .NET minimum, e.g. an export job's expirationDateTime
# (https://learn.microsoft.com/intune/intune-service/fundamentals/reports-export-graph-apis).
NEVER = "0001-01-01T00:00:00Z"
# SMBIOS system family of the Windows models above (what Autopilot's hardware hash reports).
SYSTEM_FAMILY = {
    "Latitude 5440": "Latitude",
    "Latitude 7440": "Latitude",
    "OptiPlex 7010": "OptiPlex",
    "HP EliteBook 840 G9 Notebook PC": "103C_5336AN HP EliteBook",
    "HP ProBook 450 G10 Notebook PC": "103C_5336AN HP ProBook",
    "20XXS3JC00": "ThinkPad T14 Gen 2i",
    "21CB007MUS": "ThinkPad X1 Carbon Gen 10",
    "Surface Laptop 5": "Surface",
    "Surface Pro 9": "Surface",
    "System Product Name": "To be filled by O.E.M.",
    "Virtual Machine": "Virtual Machine",
}
_WINDOWS_HARDWARE = tuple(hw for hw in HARDWARE if hw.platform == "windows")
_WINDOWS_CUMULATIVE = tuple(sum(hw.weight for hw in _WINDOWS_HARDWARE[: i + 1]) for i in range(len(_WINDOWS_HARDWARE)))
_WHITEBOX = next(hw for hw in _WINDOWS_HARDWARE if hw.serial_style == "whitebox")


class AutopilotFactory:
    """Builds windowsAutopilotDeviceIdentity objects for one tenant: the identity of an enrolled
    Intune device, or one registered by the OEM or reseller that has not enrolled yet."""

    def __init__(self, rng: random.Random, prefix: str, now: datetime) -> None:
        self.rng = rng
        self.now = now
        # Most devices carry no group tag; the rest a few per-tenant tags, as profiles are targeted.
        self.group_tags = ("", "", "", f"{prefix}-Standard", f"{prefix}-Standard", f"{prefix}-Kiosk", "Shared")
        self.purchase_orders = ("",) * 6 + tuple(
            f"PO-{now.year - 1 - i // 3}-{rng.randrange(1000, 99999):05d}" for i in range(6)
        )

    def for_device(self, device: dict[str, Any]) -> dict[str, Any]:
        """The identity of an enrolled device: same serial, manufacturer and model, pointing at it."""
        rng = self.rng
        # A user is assigned to the Autopilot record itself (assignUserToDevice) only now and then.
        assigned = bool(device["userPrincipalName"]) and rng.random() < 0.3
        return {
            "@odata.type": AUTOPILOT_ODATA_TYPE,
            "id": fast_guid(rng),  # the ZTDID
            "groupTag": rng.choice(self.group_tags),
            "purchaseOrderIdentifier": rng.choice(self.purchase_orders),
            "serialNumber": device["serialNumber"],
            "productKey": "",
            "manufacturer": device["manufacturer"],
            "model": device["model"],
            "enrollmentState": "enrolled",
            "lastContactedDateTime": device["lastSyncDateTime"],
            "addressableUserName": device["userDisplayName"] if assigned else "",
            "userPrincipalName": device["userPrincipalName"] if assigned else "",
            "resourceName": "",
            "skuNumber": "",
            "systemFamily": SYSTEM_FAMILY.get(device["model"], ""),
            "azureActiveDirectoryDeviceId": device["azureADDeviceId"],
            "managedDeviceId": device["id"],
            "displayName": device["deviceName"] if rng.random() < 0.2 else "",
        }

    def unenrolled(self, *, placeholder_serial: bool = False, failed: bool = False) -> dict[str, Any]:
        """Registered (the hardware hash was imported, which creates the Entra device object) but
        never enrolled in Intune, so there is no managed device: managedDeviceId is the empty GUID
        (the docs show no unenrolled example; published payloads of unenrolled identities carry it).
        ``failed`` is the state with an enrollment failure record."""
        rng = self.rng
        hw = _WHITEBOX if placeholder_serial else rng.choices(_WINDOWS_HARDWARE, cum_weights=_WINDOWS_CUMULATIVE)[0]
        serial = rng.choice(PLACEHOLDER_SERIALS[:2]) if placeholder_serial else _serial(rng, hw.serial_style)
        contacted = _dt(self.now - timedelta(seconds=rng.randrange(3_600, 86_400 * 60))) if failed else NEVER
        return {
            "@odata.type": AUTOPILOT_ODATA_TYPE,
            "id": fast_guid(rng),
            "groupTag": rng.choice(self.group_tags),
            "purchaseOrderIdentifier": rng.choice(self.purchase_orders),
            "serialNumber": serial,
            "productKey": "",
            "manufacturer": hw.manufacturer,
            "model": hw.model,
            "enrollmentState": "failed" if failed else "notContacted",
            "lastContactedDateTime": contacted,
            "addressableUserName": "",
            "userPrincipalName": "",
            "resourceName": "",
            "skuNumber": "",
            "systemFamily": SYSTEM_FAMILY.get(hw.model, ""),
            "azureActiveDirectoryDeviceId": fast_guid(rng),
            "managedDeviceId": ZERO_GUID,
            "displayName": "",
        }


def generate_autopilot(
    rng: random.Random,
    devices: list[dict[str, Any]],
    prefix: str,
    now: datetime,
    *,
    coverage: float = 0.85,
    unenrolled: int | None = None,
) -> list[dict[str, Any]]:
    """Autopilot identities for ``coverage`` (rounded) of the Windows devices joined to Entra (the rest
    were enrolled without Autopilot), plus ``unenrolled`` registered devices that never enrolled (default
    15% of the Windows devices, at least one when the tenant has devices). The first unenrolled one
    has a placeholder serial and every fifth is ``failed``. Listed in serial-number order: the
    service's own ``$skiptoken`` is ``LastSerialNumber='...'``."""
    factory = AutopilotFactory(rng, prefix, now)
    windows = [d for d in devices if d.get("operatingSystem") == "Windows"]
    joined = [d for d in windows if d.get("azureADDeviceId") not in (None, "", ZERO_GUID)]
    # An exact share, so that even a five-device tenant shows "most".
    chosen = sorted(rng.sample(range(len(joined)), round(max(0.0, min(1.0, coverage)) * len(joined))))
    identities = [factory.for_device(joined[index]) for index in chosen]
    if unenrolled is None:
        unenrolled = max(1 if devices else 0, round(0.15 * len(windows)))
    identities.extend(
        factory.unenrolled(placeholder_serial=index == 0, failed=index % 5 == 4) for index in range(unenrolled)
    )
    identities.sort(key=lambda i: str(i["serialNumber"]))
    return identities


# --- Microsoft Entra ID devices ------------------------------------------------------------------
# Properties, names and types of Graph v1.0's `device`
# (https://learn.microsoft.com/graph/api/resources/device?view=graph-rest-1.0), exactly those that
# msgraph-sdk's v1.0 `Device` model (generated from the v1.0 metadata) parses, so nothing lands in its
# additional_data. deviceOwnership, managementType and enrollmentType take the values that page lists.
# `isManagementRestricted` is treated as returned only on $select, as Graph marks that property of
# directory objects, so a listing leaves it out unless it is selected.
ENTRA_SELECT_ONLY = ("isManagementRestricted",)
# The appId of Microsoft Intune, the MDM application that registers Intune-managed devices (mdmAppId).
INTUNE_MDM_APP_ID = "0000000a-0000-0000-c000-000000000000"
# enrollmentType values the device page lists; Intune's finer deviceEnrollmentType maps onto them.
ENTRA_ENROLLMENT_TYPES = frozenset(
    {
        "unknown",
        "userEnrollment",
        "deviceEnrollmentManager",
        "appleBulkWithUser",
        "appleBulkWithoutUser",
        "windowsAzureADJoin",
        "windowsBulkUserless",
        "windowsAutoEnrollment",
        "windowsBulkAzureDomainJoin",
        "windowsCoManagement",
    }
)
_ENROLLMENT_TYPE_ALIASES = {
    "windowsAzureADJoinUsingDeviceAuth": "windowsAzureADJoin",
    "appleUserEnrollment": "userEnrollment",
}
_IS_COMPLIANT = {"compliant": True, "noncompliant": False}
_BYOD_PHONES = tuple(hw for hw in HARDWARE if hw.platform in ("ios", "android") and hw.serial_style != "zebra")


def entra_trust_type(operating_system: str, ownership: str, management_agent: str = "") -> str:
    """How a device is joined: Windows company devices are joined to Entra (``AzureAd``), or
    hybrid-joined from Active Directory (``ServerAd``) when Configuration Manager co-manages them;
    personal devices, phones, tablets and Macs are registered (``Workplace``)."""
    if operating_system != "Windows" or ownership != "company":
        return "Workplace"
    return "ServerAd" if management_agent.startswith("configurationManager") else "AzureAd"


def _iso(value: datetime) -> str:
    # The managed devices' own (naive, whole-second) times format without _dt's costly replace().
    if value.tzinfo is None and not value.microsecond:
        return value.isoformat() + "Z"
    return _dt(value)


def _entra_device(
    rng: random.Random,
    *,
    device_id: str,
    display_name: str,
    operating_system: str,
    version: str,
    trust_type: str,
    ownership: str,
    manufacturer: str | None,
    model: str | None,
    registered: datetime,
    last_sign_in: datetime | None,
    managed: dict[str, Any] | None = None,
    enabled: bool = True,
) -> dict[str, Any]:
    hybrid = trust_type == "ServerAd"
    return {
        "id": fast_guid(rng),  # the directory object id, not the deviceId
        "deletedDateTime": None,
        "accountEnabled": enabled,
        "alternativeSecurityIds": [],
        "approximateLastSignInDateTime": _iso(last_sign_in) if last_sign_in else None,
        "complianceExpirationDateTime": None,
        "deviceCategory": None,
        "deviceId": device_id,
        "deviceMetadata": None,
        "deviceOwnership": ownership,
        "deviceVersion": 2,
        "displayName": display_name,
        "enrollmentProfileName": None,
        "enrollmentType": managed["enrollmentType"] if managed else None,
        "isCompliant": managed["isCompliant"] if managed else None,
        "isManaged": managed is not None,
        "isManagementRestricted": False,
        "isRooted": False,
        "managementType": managed["managementType"] if managed else None,
        "manufacturer": manufacturer,
        "mdmAppId": INTUNE_MDM_APP_ID if managed else None,
        "model": model,
        "onPremisesLastSyncDateTime": _iso(registered + timedelta(days=1)) if hybrid else None,
        "onPremisesSecurityIdentifier": f"S-1-5-21-{rng.getrandbits(31)}-{rng.getrandbits(31)}-{rng.getrandbits(31)}-{rng.randrange(1100, 99999)}"
        if hybrid
        else None,
        "onPremisesSyncEnabled": True if hybrid else None,
        "operatingSystem": operating_system,
        "operatingSystemVersion": version,
        "physicalIds": [],
        "profileType": "RegisteredDevice",
        "registrationDateTime": _iso(registered),
        "systemLabels": [],
        "trustType": trust_type,
    }


class EntraDeviceFactory:
    """Builds Entra ID device objects for one tenant: the one of an Intune device joined or registered
    to Entra, the one an Autopilot import created, or one Intune does not manage."""

    def __init__(self, rng: random.Random, prefix: str, now: datetime) -> None:
        self.rng = rng
        self.prefix = prefix
        self.now = now
        self._counter = 0

    def for_managed(self, device: dict[str, Any]) -> dict[str, Any]:
        """The Entra object of an Intune device: deviceId is its azureADDeviceId, managed by Intune."""
        rng = self.rng
        # Naive UTC, as the managed device's "...Z" strings write it.
        enrolled = datetime.fromisoformat(str(device["enrolledDateTime"]).rstrip("Z"))
        last_sync = datetime.fromisoformat(str(device["lastSyncDateTime"]).rstrip("Z"))
        ownership = str(device.get("managedDeviceOwnerType") or "unknown")
        agent = str(device.get("managementAgent") or "")
        enrollment = str(device.get("deviceEnrollmentType") or "unknown")
        enrollment = _ENROLLMENT_TYPE_ALIASES.get(enrollment, enrollment)
        return _entra_device(
            rng,
            device_id=str(device["azureADDeviceId"]),
            display_name=str(device["deviceName"]),
            operating_system=str(device["operatingSystem"]),
            version=str(device["osVersion"]),
            trust_type=entra_trust_type(str(device["operatingSystem"]), ownership, agent),
            ownership=ownership,
            manufacturer=device.get("manufacturer"),
            model=device.get("model"),
            # Registration (join) comes minutes before the MDM enrollment it triggers. (random() is
            # cheaper than randrange on 50,000 devices.)
            registered=enrolled - timedelta(seconds=30 + int(rng.random() * 870)),
            last_sign_in=last_sync - timedelta(seconds=int(rng.random() * 21_600)),
            managed={
                "isCompliant": _IS_COMPLIANT.get(str(device.get("complianceState"))),
                "managementType": agent or "mdm",
                "enrollmentType": enrollment if enrollment in ENTRA_ENROLLMENT_TYPES else "unknown",
            },
        )

    def for_autopilot(self, identity: dict[str, Any]) -> dict[str, Any]:
        """Importing an Autopilot hardware hash creates an Entra device named by the serial number; it
        is joined when the device first starts, and has not signed in until then."""
        rng = self.rng
        contacted = str(identity.get("lastContactedDateTime") or NEVER)
        signed_in = None if contacted == NEVER else datetime.fromisoformat(contacted.rstrip("Z"))
        return _entra_device(
            rng,
            device_id=str(identity["azureActiveDirectoryDeviceId"]),
            display_name=str(identity["serialNumber"]) or "Autopilot device",
            operating_system="Windows",
            version="10.0.19045.0" if signed_in is None else rng.choice(OS_VERSIONS["windows"]),
            trust_type="AzureAd",
            ownership="company",
            manufacturer=identity.get("manufacturer"),
            model=identity.get("model"),
            registered=self.now - timedelta(seconds=rng.randrange(86_400 * 7, 86_400 * 400)),
            last_sign_in=signed_in,
        )

    def unmanaged(self, kind: int) -> dict[str, Any]:
        """One device Intune does not manage, of four kinds in turn: a personal phone registered by an
        app (Workplace), an old company laptop that stopped signing in (every other one disabled), a
        personal Windows PC with a work account added (Workplace), a hybrid-joined desktop (ServerAd)."""
        rng = self.rng
        self._counter += 1
        now = self.now
        kind %= 4
        if kind == 0:
            hw = rng.choice(_BYOD_PHONES)
            os_key = "ipados" if hw.model.startswith("iPad") else hw.platform
            first = rng.choice(FIRST_NAMES)
            label = "iPad" if os_key == "ipados" else ("iPhone" if hw.platform == "ios" else hw.model)
            return _entra_device(
                rng,
                device_id=fast_guid(rng),
                display_name=f"{first}\u2019s {label}",
                operating_system="iPadOS" if os_key == "ipados" else OPERATING_SYSTEM[hw.platform],
                version=rng.choice(OS_VERSIONS[os_key]),
                trust_type="Workplace",
                ownership="personal",
                manufacturer=hw.manufacturer,
                model=hw.model,
                registered=now - timedelta(seconds=rng.randrange(86_400 * 30, 86_400 * 900)),
                last_sign_in=now - timedelta(seconds=rng.randrange(600, 86_400 * 20)),
            )
        hw = rng.choices(_WINDOWS_HARDWARE, cum_weights=_WINDOWS_CUMULATIVE)[0]
        if kind == 1:
            registered = now - timedelta(seconds=rng.randrange(86_400 * 700, 86_400 * 1_800))
            return _entra_device(
                rng,
                device_id=fast_guid(rng),
                display_name=f"{self.prefix}-LT-OLD{self._counter:03d}",
                operating_system="Windows",
                version="10.0.19044.2965" if rng.random() < 0.5 else "10.0.19045.3803",
                trust_type="AzureAd",
                ownership="company",
                manufacturer=hw.manufacturer,
                model=hw.model,
                registered=registered,
                # Long gone: between 4 months and 2 years without a sign-in.
                last_sign_in=now - timedelta(seconds=rng.randrange(86_400 * 120, 86_400 * 730)),
                enabled=(self._counter // 4) % 2 == 1,  # the first disabled, then every other one
            )
        personal = kind == 2
        return _entra_device(
            rng,
            device_id=fast_guid(rng),
            display_name=f"DESKTOP-{''.join(rng.choices('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', k=7))}"
            if personal
            else f"{self.prefix}-WS-{self._counter:03d}",
            operating_system="Windows",
            version=rng.choice(OS_VERSIONS["windows"]),
            trust_type="Workplace" if personal else "ServerAd",
            ownership="personal" if personal else "company",
            manufacturer=None if personal else hw.manufacturer,
            model=None if personal else hw.model,
            registered=now - timedelta(seconds=rng.randrange(86_400 * 10, 86_400 * 1_000)),
            last_sign_in=now - timedelta(seconds=rng.randrange(600, 86_400 * 30)),
        )


def generate_entra_devices(
    rng: random.Random,
    devices: list[dict[str, Any]],
    autopilot: list[dict[str, Any]],
    prefix: str,
    now: datetime,
    *,
    unmanaged: int | None = None,
) -> list[dict[str, Any]]:
    """Entra ID devices: one per Intune device registered in Entra (``azureADDeviceId`` not the empty
    GUID), one per Autopilot identity that never enrolled (the import created it), and ``unmanaged``
    devices Intune does not manage (default 12% of the Intune devices, at least 4 when there are any).
    Listed by object id."""
    factory = EntraDeviceFactory(rng, prefix, now)
    out = [factory.for_managed(d) for d in devices if d.get("azureADDeviceId") not in (None, "", ZERO_GUID)]
    out.extend(factory.for_autopilot(i) for i in autopilot if i.get("managedDeviceId") == ZERO_GUID)
    if unmanaged is None:
        unmanaged = max(4, round(0.12 * len(devices))) if devices else 0
    out.extend(factory.unmanaged(index) for index in range(unmanaged))
    out.sort(key=lambda d: str(d["id"]))
    return out


# --- Defender vulnerabilities by machine and software ----------------------------------------------
# One record per (machine, CVE, product version), as GET /api/vulnerabilities/machinesVulnerabilities
# lists them (PublicAssetVulnerabilityDto,
# https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines): the id joins
# machine, CVE, vendor, product, version and fixing KB with "-_-" (the KB empty when there is none, as in
# that page's example), vendor and product are Defender's lower-case underscore names, fixingKbId is the
# KB number without "KB" (the example's "3185911") or null, and severity one of Low, Medium, High,
# Critical (https://learn.microsoft.com/defender-endpoint/api/vulnerability).
VULNERABILITY_SEVERITIES = ("Low", "Medium", "High", "Critical")
# Cumulative updates a Windows machine may be missing: the KB that fixes each product, and the CVEs
# (with Defender's severity, from their CVSS scores) that update fixed.
WINDOWS_UPDATES: dict[str, tuple[dict[str, str], tuple[tuple[str, str], ...]]] = {
    "2024-02": (
        {"windows_11": "5034765", "windows_10": "5034763", "windows_server_2022": "5034770",
         "windows_server_2019": "5034768"},
        (("CVE-2024-21412", "High"), ("CVE-2024-21351", "High"), ("CVE-2024-21338", "High"),
         ("CVE-2024-21340", "Medium")),
    ),
    "2024-08": (
        {"windows_11": "5041585", "windows_10": "5041580", "windows_server_2022": "5041160",
         "windows_server_2019": "5041578"},
        (("CVE-2024-38063", "Critical"), ("CVE-2024-38193", "High"), ("CVE-2024-38106", "High")),
    ),
    "2025-02": (
        {"windows_11": "5051987"},
        (("CVE-2025-21418", "High"), ("CVE-2025-21391", "High")),
    ),
}
# The OS a Defender machine reports (osPlatform, and osBuild for Windows 11) -> Defender's product name
# and the patch levels it may sit at: (version, the updates it lacks).
_OS_LEVELS: dict[str, tuple[str, tuple[tuple[str, tuple[str, ...]], ...]]] = {
    "Windows10": ("windows_10", (("10.0.19045.3930", ("2024-02", "2024-08")), ("10.0.19045.4651", ("2024-08",)))),
    "Windows11:22621": ("windows_11", (("10.0.22621.3007", ("2024-02", "2024-08")), ("10.0.22621.3880", ("2024-08",)))),
    "Windows11:22631": ("windows_11", (("10.0.22631.3007", ("2024-02", "2024-08")), ("10.0.22631.3880", ("2024-08",)))),
    "Windows11:26100": ("windows_11", (("10.0.26100.2894", ("2025-02",)),)),
    "WindowsServer2022": ("windows_server_2022", (("10.0.20348.2227", ("2024-02", "2024-08")),
                                                  ("10.0.20348.2582", ("2024-08",)))),
    "WindowsServer2019": ("windows_server_2019", (("10.0.17763.5329", ("2024-02", "2024-08")),
                                                  ("10.0.17763.6054", ("2024-08",)))),
}


@dataclass(frozen=True)
class VulnerableSoftware:
    """An outdated version of a product, the CVEs Defender reports on it, and the platforms it runs on."""

    vendor: str
    product: str
    version: str
    cves: tuple[tuple[str, str], ...]
    platforms: frozenset[str]
    weight: int = 10


_DESKTOP = frozenset({"Windows10", "Windows11", "macOS"})
_WINDOWS = frozenset({"Windows10", "Windows11", "WindowsServer2022", "WindowsServer2019"})
VULNERABLE_SOFTWARE: tuple[VulnerableSoftware, ...] = (
    VulnerableSoftware("microsoft", "edge_chromium-based", "120.0.2210.133",
                       (("CVE-2024-0517", "High"), ("CVE-2024-0518", "High"), ("CVE-2024-0519", "High")), _DESKTOP, 14),
    # The documented example's record: an Edge left at version 81.
    VulnerableSoftware("microsoft", "edge_chromium-based", "81.0.416.77", (("CVE-2020-6494", "Low"),),
                       frozenset({"Windows10"}), 2),
    VulnerableSoftware("google", "chrome", "116.0.5845.141", (("CVE-2023-4863", "High"),), _DESKTOP, 8),
    VulnerableSoftware("google", "chrome", "121.0.6167.85",
                       (("CVE-2024-1059", "High"), ("CVE-2024-1060", "High"), ("CVE-2024-1077", "High")), _DESKTOP, 10),
    VulnerableSoftware("mozilla", "firefox", "117.0", (("CVE-2023-4863", "High"), ("CVE-2023-5217", "High")),
                       _DESKTOP, 5),
    VulnerableSoftware("mozilla", "firefox", "131.0", (("CVE-2024-9680", "Critical"),), _DESKTOP, 5),
    VulnerableSoftware("adobe", "acrobat_reader_dc", "22.003.20282", (("CVE-2023-21608", "High"),),
                       frozenset({"Windows10", "Windows11"}), 6),
    VulnerableSoftware("adobe", "acrobat_reader_dc", "23.003.20284", (("CVE-2023-26369", "High"),),
                       frozenset({"Windows10", "Windows11", "macOS"}), 8),
    VulnerableSoftware("oracle", "jre", "1.8.0.371", (("CVE-2023-22045", "Low"), ("CVE-2023-22049", "Low")),
                       _WINDOWS, 4),
    VulnerableSoftware("oracle", "jre", "1.8.0.381", (("CVE-2023-22067", "Medium"), ("CVE-2023-22081", "Medium")),
                       _WINDOWS, 6),
    VulnerableSoftware("7-zip", "7-zip", "23.01", (("CVE-2024-11477", "High"), ("CVE-2025-0411", "High")), _WINDOWS, 7),
    VulnerableSoftware("7-zip", "7-zip", "24.07", (("CVE-2025-0411", "High"),), _WINDOWS, 5),
    VulnerableSoftware("apple", "macos", "14.2.1", (("CVE-2024-23222", "High"),), frozenset({"macOS"}), 12),
    VulnerableSoftware("apple", "ios", "17.2.1", (("CVE-2024-23222", "High"),), frozenset({"iOS"}), 12),
    VulnerableSoftware("openssl", "openssl", "3.0.2", (("CVE-2022-3602", "High"), ("CVE-2023-0286", "High")),
                       frozenset({"Linux"}), 10),
    VulnerableSoftware("sudo_project", "sudo", "1.8.31", (("CVE-2021-3156", "High"),), frozenset({"Linux"}), 6),
)
_SOFTWARE_BY_PLATFORM: dict[str, tuple[VulnerableSoftware, ...]] = {
    platform: tuple(s for s in VULNERABLE_SOFTWARE if platform in s.platforms)
    for platform in ("Windows10", "Windows11", "WindowsServer2022", "WindowsServer2019", "macOS", "iOS", "Linux")
}


def vulnerability_record(
    machine_id: str, cve: str, vendor: str, product: str, version: str, kb: str | None, severity: str | None
) -> dict[str, Any]:
    return {
        "id": f"{machine_id}-_-{cve}-_-{vendor}-_-{product}-_-{version}-_-{kb or ''}",
        "cveId": cve,
        "machineId": machine_id,
        "fixingKbId": kb,
        "productName": product,
        "productVendor": vendor,
        "productVersion": version,
        "severity": severity,
    }


# What vulnerability generation needs of a machine: (id, osPlatform, osBuild), taken when the scenario is built.
MachineFacts = tuple[str, str, Any]


def machine_facts(machines: list[dict[str, Any]]) -> list[MachineFacts]:
    return [(str(m["id"]), str(m.get("osPlatform") or ""), m.get("osBuild")) for m in machines]


def vulnerabilities_for_machine(rng: random.Random, machine: MachineFacts) -> list[dict[str, Any]]:
    """What Defender reports on one machine with outdated software: a missing Windows update (every CVE it
    fixes, with its KB) and/or one or two outdated applications (their CVEs, no KB)."""
    machine_id, platform, build = machine
    out: list[dict[str, Any]] = []
    os_key = f"{platform}:{build}" if platform == "Windows11" else platform
    levels = _OS_LEVELS.get(os_key)
    software = _SOFTWARE_BY_PLATFORM.get(platform, ())
    if levels and (not software or rng.random() < 0.55):
        product, choices = levels
        version, missing = rng.choice(choices)
        for update in missing:
            kbs, cves = WINDOWS_UPDATES[update]
            out.extend(
                vulnerability_record(machine_id, cve, "microsoft", product, version, kbs.get(product), severity)
                for cve, severity in cves
            )
    if software and (not out or rng.random() < 0.5):
        picked: list[VulnerableSoftware] = []
        for _ in range(rng.choice((1, 1, 1, 2))):
            choice = rng.choices(software, weights=[s.weight for s in software])[0]
            if all(p.product != choice.product for p in picked):
                picked.append(choice)
        for item in picked:
            out.extend(
                vulnerability_record(machine_id, cve, item.vendor, item.product, item.version, None, severity)
                for cve, severity in item.cves
            )
    return out


def generate_vulnerabilities(
    rng: random.Random, machines: list[MachineFacts], *, share: float = 0.45, oddities: bool = False
) -> list[dict[str, Any]]:
    """Vulnerabilities on ``share`` of the machines (each machine with outdated software gets every CVE of
    it), in machine order. ``oddities`` adds what Defender may legally send and a client must survive: a
    Windows CVE without a fixing KB, a null severity, a severity outside the four documented, a machine
    offboarded since, a product name of 300 characters, and the first record's id again on the last page."""
    out: list[dict[str, Any]] = []
    for machine in machines:
        if rng.random() < share:
            out.extend(vulnerabilities_for_machine(rng, machine))
    if oddities and machines:
        windows = next((m for m in machines if m[1] in ("Windows10", "Windows11")), machines[0])
        other = machines[len(machines) // 2]
        offboarded = hashlib.sha1(f"offboarded:{machines[0][0]}".encode(), usedforsecurity=False).hexdigest()
        long_name = "workspace_app_for_windows" + "_long_term_service_release" * 11
        out[len(out) // 2 : len(out) // 2] = [
            # A Windows vulnerability Microsoft has not shipped a KB for (still listed, KB null, id ends "-_-").
            vulnerability_record(windows[0], "CVE-2024-43461", "microsoft",
                                 "windows_11" if windows[1] == "Windows11" else "windows_10",
                                 "10.0.22631.4169" if windows[1] == "Windows11" else "10.0.19045.4894", None, "High"),
            vulnerability_record(other[0], "CVE-2025-0411", "7-zip", "7-zip", "24.08", None, None),
            vulnerability_record(other[0], "CVE-2023-44487", "microsoft", "dotnet", "6.0.20", None, "Informational"),
            vulnerability_record(offboarded, "CVE-2023-4863", "google", "chrome", "116.0.5845.97", None, "High"),
            vulnerability_record(windows[0], "CVE-2023-24483", "citrix", long_name, "2203.1.2000.0", None, "High"),
        ]
        out.append(dict(out[0]))
    return out


# --- Subscribed SKUs (Microsoft Graph v1.0 subscribedSku) -------------------------------------------
# https://learn.microsoft.com/graph/api/resources/subscribedsku: id "{tenantId}_{skuId}", prepaidUnits
# (licenseUnitsDetail: enabled, lockedOut, suspended, warning), servicePlans (servicePlanInfo) and
# capabilityStatus Enabled, Warning, Suspended, Deleted or LockedOut. skuId, skuPartNumber and the service
# plans as Microsoft's "Product names and service plan identifiers for licensing" lists them
# (https://learn.microsoft.com/entra/identity/users/licensing-service-plan-reference).
SERVICE_PLANS: dict[str, str] = {
    "EXCHANGE_S_FOUNDATION": "113feb6c-3fe4-4440-bddc-54d774bf0318",
    "EXCHANGE_S_ENTERPRISE": "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "EXCHANGE_S_STANDARD": "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
    "SHAREPOINTENTERPRISE": "5dbe027f-2339-4123-9542-606e4d348a72",
    "SHAREPOINTSTANDARD": "c7699d2e-19aa-44de-8edf-1736da088ca1",
    "MCOSTANDARD": "0feaeb32-d00e-4d66-bd5a-43b5b83db82c",
    "OFFICESUBSCRIPTION": "43de0ff5-c92c-492b-9116-175376d08c38",
    "OFFICE_BUSINESS": "094e7854-93fc-4d55-b2c0-3ab5369ebdc1",
    "TEAMS1": "57ff2da0-773e-42df-b2af-ffb7a2317929",
    "SWAY": "a23b959c-7ce8-4e57-9140-b90eb88a9e97",
    "YAMMER_ENTERPRISE": "7547a3fe-08ee-4ccb-b430-5077c5041653",
    "AAD_PREMIUM": "41781fb2-bc02-4b7c-bd55-b576c07bb09d",
    "AAD_PREMIUM_P2": "eec0eb4f-6444-4f95-aba0-50c24d67f998",
    "MFA_PREMIUM": "8a256a2b-b617-496d-b51b-e76466e88db0",
    "RMS_S_ENTERPRISE": "bea4c11e-220a-4e6d-8eb8-8ea15d019f90",
    "RMS_S_PREMIUM": "6c57d4b6-3b23-47a5-9bc9-69f17b4947b3",
    "INTUNE_A": "c1ec4a95-1f05-45b3-a911-aa3fa01094f5",
    "WINDEFATP": "871d91ec-ec1a-452b-a83f-bd76c7d770ef",
    "FLOW_P2_VIRAL": "50e68c76-46c6-4674-81f9-75456511b170",
    "BI_AZURE_P0": "2049e525-b859-401b-b2a0-e0a31c4b1fe4",
    "WINDOWS_STORE": "a420f25f-a7b3-4ff5-a9d0-5d58f73b537d",
}


@dataclass(frozen=True)
class Sku:
    part_number: str
    sku_id: str
    plans: tuple[str, ...]
    applies_to: str = "User"


_OFFICE_E = ("EXCHANGE_S_ENTERPRISE", "SHAREPOINTENTERPRISE", "MCOSTANDARD", "OFFICESUBSCRIPTION", "TEAMS1")
_OFFICE_BUSINESS = ("EXCHANGE_S_STANDARD", "SHAREPOINTSTANDARD", "MCOSTANDARD", "OFFICE_BUSINESS", "TEAMS1")
SKUS: dict[str, Sku] = {
    sku.part_number: sku
    for sku in (
        Sku("SPE_E3", "05e9a617-0261-4cee-bb44-138d3ef5d965",
            (*_OFFICE_E, "AAD_PREMIUM", "MFA_PREMIUM", "RMS_S_ENTERPRISE", "RMS_S_PREMIUM", "INTUNE_A",
             "EXCHANGE_S_FOUNDATION")),
        Sku("SPE_E5", "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
            (*_OFFICE_E, "AAD_PREMIUM", "AAD_PREMIUM_P2", "MFA_PREMIUM", "RMS_S_ENTERPRISE", "RMS_S_PREMIUM",
             "INTUNE_A", "WINDEFATP", "EXCHANGE_S_FOUNDATION")),
        Sku("ENTERPRISEPACK", "6fd2c87f-b296-42f0-b197-1e91e994b900",
            (*_OFFICE_E, "RMS_S_ENTERPRISE", "SWAY", "YAMMER_ENTERPRISE", "EXCHANGE_S_FOUNDATION")),
        Sku("O365_BUSINESS_PREMIUM", "f245ecc8-75af-4f8e-b61f-27d8114de5f3",
            (*_OFFICE_BUSINESS, "SWAY", "EXCHANGE_S_FOUNDATION")),
        Sku("SPB", "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
            (*_OFFICE_BUSINESS, "AAD_PREMIUM", "MFA_PREMIUM", "RMS_S_ENTERPRISE", "INTUNE_A", "EXCHANGE_S_FOUNDATION")),
        Sku("EMS", "efccb6f7-5641-4e0e-bd10-b4976e1bf68e",
            ("AAD_PREMIUM", "MFA_PREMIUM", "RMS_S_ENTERPRISE", "RMS_S_PREMIUM", "INTUNE_A", "EXCHANGE_S_FOUNDATION")),
        Sku("INTUNE_A", "061f9ace-7d42-4136-88ac-31dc755f143f", ("INTUNE_A", "EXCHANGE_S_FOUNDATION")),
        Sku("WIN_DEF_ATP", "111046dd-295b-4d6d-9724-d52ac90bd1f2", ("WINDEFATP", "EXCHANGE_S_FOUNDATION")),
        Sku("FLOW_FREE", "f30db892-07e9-47e9-837c-80727f46fd3d", ("FLOW_P2_VIRAL", "EXCHANGE_S_FOUNDATION")),
        Sku("POWER_BI_STANDARD", "a403ebcc-fae0-4ca2-8c8c-7a907fd6c235", ("BI_AZURE_P0", "EXCHANGE_S_FOUNDATION")),
        Sku("WINDOWS_STORE", "6470687e-a428-4b7a-bef2-8a291ad947c9", ("WINDOWS_STORE", "EXCHANGE_S_FOUNDATION"),
            applies_to="Company"),
    )
}
CAPABILITY_STATUSES = ("Enabled", "Warning", "Suspended", "Deleted", "LockedOut")
# Free "viral" SKUs come with this many units, of which a tenant uses a handful.
VIRAL_UNITS = 10_000


def subscribed_sku(rng: random.Random, tenant_id: str, account_name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One subscribedSku from a scenario entry ``{"sku": part number, "enabled", "consumed", "warning",
    "suspended", "lockedOut", "status"}`` (units default to 0; status to what the units say: Enabled while
    any unit is enabled, else Warning, Suspended, LockedOut, and Deleted when none is left)."""
    sku = SKUS.get(str(spec.get("sku")))
    if sku is None:
        raise ValueError(f"unknown SKU {spec.get('sku')!r}: one of {sorted(SKUS)}")
    units = {name: int(spec.get(name, 0)) for name in ("enabled", "lockedOut", "suspended", "warning")}
    status = spec.get("status") or next(
        (s for s, n in (("Enabled", "enabled"), ("Warning", "warning"), ("Suspended", "suspended"),
                        ("LockedOut", "lockedOut")) if units[n] > 0),
        "Deleted",
    )
    if status not in CAPABILITY_STATUSES:
        raise ValueError(f"SKU {sku.part_number}: status must be one of {CAPABILITY_STATUSES}")
    plan_status = {"Enabled": "Success", "Warning": "Success", "Suspended": "Disabled", "LockedOut": "Disabled",
                   "Deleted": "Disabled"}[status]
    return {
        "id": f"{tenant_id}_{sku.sku_id}",
        "accountId": tenant_id,
        "accountName": account_name,
        "appliesTo": sku.applies_to,
        "capabilityStatus": status,
        "consumedUnits": int(spec.get("consumed", 0)),
        "prepaidUnits": units,
        "servicePlans": [
            {
                "servicePlanId": SERVICE_PLANS[plan],
                "servicePlanName": plan,
                "provisioningStatus": plan_status,
                "appliesTo": sku.applies_to,
            }
            for plan in sku.plans
        ],
        "skuId": sku.sku_id,
        "skuPartNumber": sku.part_number,
        "subscriptionIds": [] if status == "Deleted" else [fast_guid(rng)],
    }


def default_skus(
    rng: random.Random, *, devices: int, intune: bool, defender: bool
) -> list[dict[str, Any]]:
    """A plausible set of 2 to 5 SKUs for a tenant the scenario says nothing about: a suite for its people
    (about one licensed user per device), Intune and Defender where the tenant has them, and free SKUs."""
    users = max(5, round(devices * rng.uniform(0.7, 0.95)))
    bought = -(-int(users * rng.uniform(1.02, 1.15)) // 5) * 5
    consumed = min(bought, users)
    specs: list[dict[str, Any]] = []
    if defender and intune:
        specs.append({"sku": "SPE_E5", "enabled": bought, "consumed": consumed})
    elif intune:
        suite = "SPB" if users <= 300 else "SPE_E3"
        specs.append({"sku": suite, "enabled": bought, "consumed": consumed})
    else:
        specs.append({"sku": "O365_BUSINESS_PREMIUM", "enabled": bought, "consumed": consumed})
        if defender:
            specs.append({"sku": "WIN_DEF_ATP", "enabled": bought, "consumed": consumed})
    specs.append({"sku": "FLOW_FREE", "enabled": VIRAL_UNITS, "consumed": rng.randrange(0, max(2, users // 10))})
    if rng.random() < 0.5:
        specs.append({"sku": "POWER_BI_STANDARD", "enabled": VIRAL_UNITS, "consumed": rng.randrange(1, max(2, users // 4))})
    return specs


def generate_subscribed_skus(
    rng: random.Random, tenant_id: str, account_name: str, specs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    return [subscribed_sku(rng, tenant_id, account_name, spec) for spec in specs]
