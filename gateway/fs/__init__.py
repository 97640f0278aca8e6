"""Filesystem enforcement: mounts make the file_read / file_write rules hold.

- `tree`: how the plan looks at the host (a `TreeView` that never follows symbolic
  links, `LocalTree`, a bounded walk).
- `plan`: `plan_mounts(policy, tree)` -> `MountPlan`, pure given the tree: read-only
  binds, writable binds or overlays, and masks over what the policy denies inside them.
- `notes`: `mount_notes(policy)`: what mounts cannot enforce (docs/mounts.md).
- `render`: a plan as JSON, a Compose volumes block or a POSIX sh script.
- `overlay`: an overlay workspace (upper and work directories, gateway-overlay.json).
- `changes`: what an agent changed in a workspace's upper layer, and its diff.
- `commit`: applying to the real tree only the changes file_write allows.
- `safetree`: walking the real tree without ever following a symbolic link.
- `watch`: every change under a writable mount becomes an audit entry.
- `snapshot`: a watched tree as last seen, a rescan of it, and what differs.
"""
