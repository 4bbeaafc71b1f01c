import { useId } from 'react'
import { Modal } from './Modal.tsx'

export function ConfirmDialog({
  open,
  title,
  message,
  confirmLabel = 'Delete',
  busy = false,
  onConfirm,
  onCancel,
}: {
  open: boolean
  title: string
  message: string
  confirmLabel?: string
  busy?: boolean
  onConfirm: () => void
  onCancel: () => void
}) {
  const id = useId()
  return (
    <Modal open={open} onClose={onCancel} labelledBy={id} className="confirm">
      <div className="modal-body" role="alertdialog" aria-labelledby={id} aria-describedby={`${id}-msg`}>
        <h2 id={id}>{title}</h2>
        <p id={`${id}-msg`}>{message}</p>
        <div className="modal-actions">
          <button type="button" className="btn" onClick={onCancel} autoFocus>
            Cancel
          </button>
          <button type="button" className="btn danger" onClick={onConfirm} disabled={busy} data-testid="confirm-delete">
            {busy ? 'Deleting…' : confirmLabel}
          </button>
        </div>
      </div>
    </Modal>
  )
}
