"""The long-lived cwm agent: an HTTP service that learns Code World Models of registered environments."""

from cwm.service.app import Service, ServiceConfig

__all__ = ["Service", "ServiceConfig"]
