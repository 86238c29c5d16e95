// Just enough markdown for chat replies, safe by construction: the text is HTML-escaped first, then fenced code
// blocks, paragraphs, **bold** and `inline code` become tags. An unclosed ``` (a reply still streaming) is a code block.
const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function inline(s: string): string {
  return escape(s)
    .replace(/`([^`\n]+)`/g, '<code>$1</code>')
    .replace(/\*\*([^*\n]+)\*\*/g, '<strong>$1</strong>');
}

export function renderMarkdown(text: string): string {
  const parts = text.split('```');
  return parts
    .map((part, i) => {
      if (i % 2 === 1) {
        const body = part.replace(/^[^\n]*\n/, ''); // drop the language tag line
        return `<pre><code>${escape(body)}</code></pre>`;
      }
      return part
        .split(/\n\s*\n/)
        .filter((p) => p.trim())
        .map((p) => `<p>${inline(p.trim()).replace(/\n/g, '<br>')}</p>`)
        .join('');
    })
    .join('');
}
