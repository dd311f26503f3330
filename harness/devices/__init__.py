"""Role protocols and the drivers that implement them for one way of reaching a device."""
