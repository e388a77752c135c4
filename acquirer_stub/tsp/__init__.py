"""The token service (TSP): card-to-phone binding with an SMS code, the token vault and token lifecycle."""
