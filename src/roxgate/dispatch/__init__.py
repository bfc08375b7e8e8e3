"""Getting due messages to the carrier and carrier reports back into the store."""
