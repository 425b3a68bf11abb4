"""The command line's context: the configuration file and log format given, and the settings read lazily.

Kept apart from `shipper.cli` so that commands defined elsewhere (`shipper.compare_cli`) reach it
without importing the command line that registers them.
"""

from __future__ import annotations

from pathlib import Path

from shipper.config import LogFormat, Settings, load_settings, log_format_asked


class Context:
    def __init__(self, config_file: Path | None, log_format: str | None) -> None:
        self.config_file = config_file
        self.log_format = log_format
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
            if self.log_format:
                self._settings = self._settings.model_copy(update={"log_format": LogFormat(self.log_format)})
            from shipper import logs

            logs.configure(self._settings.log_format.value, self._settings.log_level)
        return self._settings

    def error_format(self) -> str | None:
        """How the final error is printed, even when the settings themselves are what failed."""
        if self._settings is not None:
            return self._settings.log_format.value
        # Not from the settings: they may be what failed (see config.log_format_asked).
        asked = log_format_asked()
        return self.log_format or (asked.value if asked else None)
