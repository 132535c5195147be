"""The receiver SDK under the server's name: `docuhooks.receiver` is `docuhooks_receiver`.

The SDK is its own package, `docuhooks_receiver`, so that an integrator's application can
install it alone (the `docuhooks-receiver` distribution, built from `receiver/` in this
repository) without the server. The server's distribution ships it too; this module re-exports
its public names so that code written against `docuhooks.receiver` keeps working.
"""

from docuhooks_receiver import *  # noqa: F403
from docuhooks_receiver import __all__ as __all__
