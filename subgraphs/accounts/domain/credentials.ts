/** The rules of what a customer may sign up with. Pure: no storage, no transport. */
import { invalidInput } from '../../../platform/errors/domain-error.ts';

export const passwordLength = { min: 8, max: 128 } as const;
const emailMaxLength = 254;
// Deliberately simple: one @, a dot in the domain, no spaces. Deliverability is proven by mail, not regex.
const emailShape = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Trimmed and lower-cased, so `Ada@Example.com ` and `ada@example.com` are one account. */
export function normaliseEmail(raw: string, field = 'email'): string {
  const email = raw.trim().toLowerCase();
  if (email.length === 0) throw invalidInput('Email is required', field);
  if (email.length > emailMaxLength) throw invalidInput(`Email must be at most ${emailMaxLength} characters`, field);
  if (!emailShape.test(email)) throw invalidInput('Email is not a valid address, e.g. ada@example.com', field);
  return email;
}

export function checkPassword(password: string, field = 'password'): string {
  if (password.length < passwordLength.min) throw invalidInput(`Password must be at least ${passwordLength.min} characters`, field);
  if (password.length > passwordLength.max) throw invalidInput(`Password must be at most ${passwordLength.max} characters`, field);
  if (password.trim().length === 0) throw invalidInput('Password cannot be only spaces', field);
  return password;
}

export function checkName(raw: string, field = 'name'): string {
  const name = raw.trim();
  if (name.length === 0) throw invalidInput('Name is required', field);
  if (name.length > 100) throw invalidInput('Name must be at most 100 characters', field);
  return name;
}
