"""Staged changes -> one LSP ``WorkspaceEdit`` (versioned edits, new files, annotations).

The text work (rebase, minimal edits) is linear in the file's size; still, a multi-megabyte
file takes a noticeable moment, so the server calls :func:`to_workspace_edit` off its event
loop (``asyncio.to_thread``) with the open buffers read beforehand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from lsprotocol import types as lsp

from agentls.changes import EditConflict, FileChange, rebase
from agentls.textedits import PlainEdit, text_edits


class Snapshot(Protocol):
    """The shape of an open document (``agentls.tasks.base.DocumentSnapshot`` fits)."""

    @property
    def text(self) -> str: ...

    @property
    def version(self) -> int | None: ...


ANNOTATION_ID = "agentls"


def _range(edit: PlainEdit) -> lsp.Range:
    return lsp.Range(
        start=lsp.Position(line=edit.start_line, character=edit.start_character),
        end=lsp.Position(line=edit.end_line, character=edit.end_character),
    )


def _lsp_edits(
    edits: Sequence[PlainEdit], annotate: bool
) -> list[lsp.TextEdit | lsp.AnnotatedTextEdit | lsp.SnippetTextEdit]:
    if annotate:
        return [
            lsp.AnnotatedTextEdit(annotation_id=ANNOTATION_ID, range=_range(e), new_text=e.new_text)
            for e in edits
        ]
    return [lsp.TextEdit(range=_range(e), new_text=e.new_text) for e in edits]


def to_workspace_edit(
    changes: list[FileChange],
    current: Callable[[Path], Snapshot | None] | None = None,
    annotate: bool = False,
    disk: Callable[[Path], str | None] | None = None,
) -> lsp.WorkspaceEdit:
    """Turn staged changes into one ``WorkspaceEdit`` with ``document_changes``.

    ``current`` returns the open buffer of a path (or None when it is not open). When the
    buffer moved on since the agent read it, the change is rebased onto it and addressed
    to its current version, so the user's typing is kept; overlapping typing raises
    :class:`EditConflict`. Files that are not open get version None. Without ``current``
    the version the agent read is used. ``annotate`` marks every edit as needing
    confirmation, which VS Code shows as a refactor preview.

    ``disk`` returns a file's text on disk now (None when there is no such file). With it,
    an edit for a file that is not open is computed against that text, since a version-None
    edit is what the editor applies to the disk file: when the agent read an unsaved buffer
    that was closed meanwhile (or the file changed on disk), the change is rebased onto the
    disk text, or :class:`EditConflict` is raised when it does not rebase cleanly. A file
    the agent created that exists on disk now, or a file it edited that is gone, is a
    conflict too.
    """
    document_changes: list[
        lsp.TextDocumentEdit | lsp.CreateFile | lsp.RenameFile | lsp.DeleteFile
    ] = []
    annotation = ANNOTATION_ID if annotate else None
    for change in changes:
        uri = change.path.as_uri()
        snapshot = current(change.path) if current is not None else None
        if change.old_text is None:
            if snapshot is not None:
                raise EditConflict(
                    f"{change.path}: the agent created this file, but it is open in the "
                    "editor now; nothing was changed."
                )
            if disk is not None and disk(change.path) is not None:
                raise EditConflict(
                    f"{change.path}: the agent created this file, but it exists on disk now; "
                    "nothing was changed."
                )
            document_changes.append(
                lsp.CreateFile(
                    uri=uri,
                    options=lsp.CreateFileOptions(overwrite=False, ignore_if_exists=False),
                    annotation_id=annotation,
                )
            )
            edits = [PlainEdit(0, 0, 0, 0, change.new_text)] if change.new_text else []
            version = None
        else:
            if snapshot is not None:
                base, version = snapshot.text, snapshot.version
                target = rebase(change, snapshot.text)
            elif disk is not None:
                on_disk = disk(change.path)
                if on_disk is None:
                    raise EditConflict(
                        f"{change.path}: the file is gone from disk; the agent's edit of it "
                        "was not applied."
                    )
                # Version None means "the file on disk": the edit must be computed against
                # that text, not against a closed buffer's, or its positions land on the
                # wrong characters (def add(a, b) became def add(2, b)).
                base, version, target = on_disk, None, rebase(change, on_disk, on_disk=True)
            elif current is not None:
                base, version, target = change.old_text, None, change.new_text
            else:
                base, version, target = change.old_text, change.version, change.new_text
            edits = text_edits(base, target)
            if not edits:
                continue
        if edits:
            document_changes.append(
                lsp.TextDocumentEdit(
                    text_document=lsp.OptionalVersionedTextDocumentIdentifier(
                        uri=uri, version=version
                    ),
                    edits=_lsp_edits(edits, annotate),
                )
            )
    annotations = None
    if annotate and document_changes:
        annotations = {
            ANNOTATION_ID: lsp.ChangeAnnotation(
                label="agentls",
                needs_confirmation=True,
                description="Changes proposed by the agent",
            )
        }
    return lsp.WorkspaceEdit(document_changes=document_changes, change_annotations=annotations)
