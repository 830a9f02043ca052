// Draws a QR code (error correction M, as the CLI wallet) on a canvas:
// black on white with a four-module quiet zone, sharp at any size.

import qrcode from 'qrcode-generator';

export function draw(canvas, text, sizePx) {
  const code = qrcode(0, 'M');
  code.addData(text, 'Alphanumeric');
  code.make();
  const modules = code.getModuleCount();
  const total = modules + 8;
  const scale = Math.max(1, Math.floor(sizePx / total));
  canvas.width = canvas.height = total * scale;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#000';
  for (let row = 0; row < modules; row++) {
    for (let col = 0; col < modules; col++) {
      if (code.isDark(row, col)) ctx.fillRect((col + 4) * scale, (row + 4) * scale, scale, scale);
    }
  }
}
