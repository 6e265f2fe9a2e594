"""File extension -> language name, and the aliases skill authors may write for a language.

The one map of extensions to languages, a leaf: skills choose by it, verification picks the
test command of the file's language by it, and test files are named after it.
"""

from __future__ import annotations

from pathlib import PurePath

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".lisp": "commonlisp",
    ".lsp": "commonlisp",
    ".cl": "commonlisp",
    ".asd": "commonlisp",
    ".clj": "clojure",
    ".cljs": "clojure",
    ".cljc": "clojure",
    ".edn": "clojure",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".sh": "shell",
    ".bash": "shell",
    ".lua": "lua",
    ".ex": "elixir",
    ".exs": "elixir",
    ".hs": "haskell",
    ".scala": "scala",
    ".swift": "swift",
}

# The languages whose tests run on node (npm test) and import modules the same way.
JS_LANGUAGES = frozenset({"javascript", "typescript"})

# Other spellings (LSP languageIds, common names) -> the names above.
ALIASES: dict[str, str] = {
    "py": "python",
    "ts": "typescript",
    "typescriptreact": "typescript",
    "js": "javascript",
    "javascriptreact": "javascript",
    "lisp": "commonlisp",
    "common-lisp": "commonlisp",
    "common lisp": "commonlisp",
    "cl": "commonlisp",
    "clj": "clojure",
    "clojurescript": "clojure",
    "c++": "cpp",
    "c#": "csharp",
    "sh": "shell",
    "bash": "shell",
    "golang": "go",
}


def normalize_language(name: str) -> str:
    """The canonical name for a language as a skill author may spell it."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def language_of(path: str | PurePath) -> str | None:
    """The language of a file from its extension, or None when unknown."""
    return EXTENSIONS.get(PurePath(path).suffix.lower())
