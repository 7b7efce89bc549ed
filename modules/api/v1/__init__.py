"""AUTOMATIC1111's ``/sdapi/v1`` routes, one router per area."""
