"""The application package: ``build`` writes it from an export's manifest.json, ``record`` reads back what it
serves (``models/package.json``, its one reader)."""
