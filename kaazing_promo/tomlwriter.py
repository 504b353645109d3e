"""
Writing TOML: the standard library reads it but does not write it.  Used
for configurations the gateway generates (container contexts, the effective
settings check-config prints, test fixtures).
"""

import json
import tomllib


def tomlKey(key):
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return tomlString(key)


def tomlString(value):
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def tomlValue(value):
    """
    @return: the TOML text of one value (sets are written sorted).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return tomlString(value)
    if isinstance(value, (set, frozenset)):
        value = sorted(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(tomlValue(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{tomlKey(k)} = {tomlValue(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {type(value).__name__} values as TOML")


def _isTableArray(value):
    return isinstance(value, list) and value and all(isinstance(item, dict) for item in value)


def dumpToml(document):
    """
    @param document: what L{tomllib.loads} returns (strings, numbers,
        booleans, lists, tables).
    @return: TOML text that reads back as C{document}.
    @raise ValueError: it would not.
    """
    lines = []

    def emit(table, prefix):
        for key, value in table.items():
            if not isinstance(value, dict) and not _isTableArray(value):
                lines.append(f"{tomlKey(key)} = {tomlValue(value)}")
        for key, value in table.items():
            path = prefix + [tomlKey(key)]
            if isinstance(value, dict):
                lines.extend(["", f"[{'.'.join(path)}]"])
                emit(value, path)
            elif _isTableArray(value):
                for item in value:
                    lines.extend(["", f"[[{'.'.join(path)}]]"])
                    emit(item, path)

    emit(document, [])
    text = "\n".join(lines).lstrip("\n") + "\n"
    if tomllib.loads(text) != document:
        raise ValueError("the configuration does not survive being rewritten as TOML")
    return text
