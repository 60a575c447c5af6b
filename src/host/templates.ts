// Reads the static text in templates/ (shipped with the package), for the renderers.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const TEMPLATES_DIR = join(__dirname, '..', '..', 'templates');

/** Returns a template's text with {{name}} placeholders filled in. */
export function fillTemplate(name: string, values: Record<string, string>): string {
  const text = readFileSync(join(TEMPLATES_DIR, name), 'utf8');
  return text.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    if (!(key in values)) throw new Error(`template ${name}: no value for {{${key}}}`);
    return values[key];
  });
}
