"""An integration's app credentials, read from Key Vault by integration id: the one way every service
gets them, with one explanation of what is wrong when the vault cannot give them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared import sdk
from shared.auth import AppCredential
from shared.clients.keyvault import secret_name
from shared.errors import ActionableError, ErrorCode, unreachable
from shared.models import AppRole

if TYPE_CHECKING:
    from shared.models import Integration
    from shared.runtime import Runtime

_LABELS = {AppRole.PARTNER: "partner app", AppRole.SYNC: "sync app"}


async def app_credential(rt: Runtime, integration: Integration, role: AppRole) -> AppCredential:
    """The partner or sync app's id and current secret; an `ActionableError` when it cannot be had."""
    label = _LABELS[role]
    app_id = integration.partner_app_id if role is AppRole.PARTNER else integration.sync_app_id
    again = f"Give memsync the {label}'s secret again with PUT /api/integrations/{integration.id}/secrets."
    if not app_id:
        raise ActionableError(ErrorCode.INVALID_SECRET, f"The integration has no {label} id.",
                              f"Register the integration again with its {label}.")
    try:
        secret = await rt.secrets.get_secret(secret_name(integration.id, role))
    except sdk.ResourceNotFoundError:
        raise ActionableError(ErrorCode.INVALID_SECRET,
                              f"The {label}'s secret of integration {integration.id} is not in Key Vault.",
                              again) from None
    except (sdk.ServiceRequestError, sdk.HttpResponseError) as exc:
        raise unreachable("Azure Key Vault", type(exc).__name__) from None
    if not secret.get_secret_value():
        raise ActionableError(ErrorCode.INVALID_SECRET,
                              f"The {label}'s secret of integration {integration.id} is empty in Key Vault.", again)
    return AppCredential(app_id, secret, label=label)
