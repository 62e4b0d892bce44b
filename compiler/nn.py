"""`npuc.nn`: npuc's trainable spiking modules (defined in `npuc.frontends.nn`)."""

from .frontends.nn import *  # noqa: F403
