"""The worker process's runtime (clients built once from the app settings), shared by the blueprints."""

from shared.runtime import RuntimeHolder

runtime = RuntimeHolder()
