"""ragyard: the platform-wide pieces (settings, local process supervision, CLI)."""
