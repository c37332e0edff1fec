/** What makes a postal address acceptable. Pure. */
import { invalidInput } from '../../../platform/errors/domain-error.ts';

export interface AddressDraft {
  label: string | null;
  line1: string;
  line2: string | null;
  city: string;
  postalCode: string;
  country: string;
  isDefault: boolean;
}

export interface AddressInput {
  label?: string | null;
  line1: string;
  line2?: string | null;
  city: string;
  postalCode: string;
  country: string;
  isDefault?: boolean | null;
}

export const maxAddressesPerCustomer = 20;

function required(value: string, field: string, max: number): string {
  const trimmed = value.trim();
  if (trimmed.length === 0) throw invalidInput(`${field.split('.').pop()} is required`, field);
  if (trimmed.length > max) throw invalidInput(`${field.split('.').pop()} must be at most ${max} characters`, field);
  return trimmed;
}

function optional(value: string | null | undefined, field: string, max: number): string | null {
  if (value === null || value === undefined || value.trim() === '') return null;
  return required(value, field, max);
}

export function checkAddress(input: AddressInput): AddressDraft {
  const country = input.country.trim().toUpperCase();
  if (!/^[A-Z]{2}$/.test(country)) throw invalidInput('country must be an ISO 3166-1 alpha-2 code such as DE or US', 'input.country');
  return {
    label: optional(input.label, 'input.label', 50),
    line1: required(input.line1, 'input.line1', 200),
    line2: optional(input.line2, 'input.line2', 200),
    city: required(input.city, 'input.city', 100),
    postalCode: required(input.postalCode, 'input.postalCode', 20),
    country,
    isDefault: input.isDefault ?? false,
  };
}
