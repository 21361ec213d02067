"""Every error the kit raises on purpose: one base class, messages that say where and what to do."""


class ZhllmError(Exception):
    """Base class of all zhllm errors; catch this to handle any of them."""


class ConfigError(ZhllmError):
    """A profile, recipe or argument is not valid."""


class MissingDependencyError(ZhllmError):
    """A package or data file the kit needs is not installed; the message names the fix."""


class TokenizerError(ZhllmError):
    """A tokenizer is of a kind the operation does not support, or is inconsistent."""


class StageError(ZhllmError):
    """A pipeline stage failed or its artifacts are missing or incomplete."""


class DataError(ZhllmError):
    """A data row or file is malformed; the message names the source, the row and the field."""

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 field: str | None = None):
        self.source, self.row, self.field = source, row, field
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
