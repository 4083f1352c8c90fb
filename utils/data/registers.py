"""Generated registers: past- and present-tense narration, and scientific prose.

The same people, places, objects and verbs appear in both narrations; only tense separates
them, so a model (and an SAE latent) has to represent tense rather than topic.
"""

from __future__ import annotations

import random

from .doc import Doc, DocBuilder, number_spans

NAMES = ["Mara", "Tomas", "Aiko", "Leila", "Omar", "Greta", "Ivan", "Nadia", "Pedro", "Ruth",
         "Kwame", "Elena", "Felix", "Hana", "Jonas", "Priya", "Samir", "Lucia", "Oskar", "Wen",
         "Amara", "Bruno", "Chloe", "Dmitri", "Esther", "Farid", "Ines", "Kofi", "Lena", "Mateo"]
PRONOUN = {n: ("she" if n in {"Mara", "Aiko", "Leila", "Greta", "Nadia", "Ruth", "Elena", "Hana",
                              "Priya", "Lucia", "Wen", "Amara", "Chloe", "Esther", "Ines", "Lena"}
               else "he") for n in NAMES}
PLACES = ["the market", "the harbour", "the library", "the old mill", "the station", "the bakery",
          "the river", "the school", "the village square", "the forest", "the hospital",
          "the museum", "the garden", "the bridge", "the farm", "the workshop", "the beach",
          "the hill", "the post office", "the cafe"]
OBJECTS = ["the door", "a letter", "the bread", "a small key", "the fence", "the map", "a basket",
           "the kettle", "a blue coat", "the window", "the boat", "a heavy box", "the lamp",
           "an old book", "the bicycle", "the garden gate", "a cup of tea", "the newspaper",
           "a wooden chair", "the clock"]
PEOPLE = ["her aunt", "his brother", "an old friend", "the baker", "the doctor", "a neighbour",
          "the teacher", "the fisherman", "her cousin", "the mayor"]

# (3rd-person-singular present, past, frame). Regular and irregular forms, so tense is not
# just a spelling suffix.
VERBS = [
    ("walks", "walked", "move"), ("runs", "ran", "move"), ("goes", "went", "move"),
    ("drives", "drove", "move"), ("hurries", "hurried", "move"), ("travels", "travelled", "move"),
    ("wanders", "wandered", "move"), ("cycles", "cycled", "move"), ("returns", "returned", "move"),
    ("climbs", "climbed", "move"),
    ("opens", "opened", "obj"), ("buys", "bought", "obj"), ("finds", "found", "obj"),
    ("paints", "painted", "obj"), ("reads", "read", "obj"), ("carries", "carried", "obj"),
    ("fixes", "fixed", "obj"), ("cleans", "cleaned", "obj"), ("takes", "took", "obj"),
    ("closes", "closed", "obj"), ("sells", "sold", "obj"), ("holds", "held", "obj"),
    ("loses", "lost", "obj"), ("brings", "brought", "obj"), ("breaks", "broke", "obj"),
    ("writes", "wrote", "obj"), ("makes", "made", "obj"), ("keeps", "kept", "obj"),
    ("studies", "studied", "obj"),
    ("visits", "visited", "person"), ("meets", "met", "person"), ("helps", "helped", "person"),
    ("teaches", "taught", "person"),
    ("calls", "called", "person"), ("thanks", "thanked", "person"), ("greets", "greeted", "person"),
    ("laughs", "laughed", "intr"), ("sleeps", "slept", "intr"), ("waits", "waited", "intr"),
    ("smiles", "smiled", "intr"), ("sings", "sang", "intr"), ("sits", "sat", "intr"),
    ("listens", "listened", "intr"), ("works", "worked", "intr"),
]
ADVERBS = ["quietly", "slowly", "again", "alone", "for a while", "all afternoon", "happily",
           "without a word", "in the rain", "at dawn"]
PAST_TIME = ["Yesterday", "Last winter", "Long ago", "That morning", "The next day",
             "After the storm", "One evening", "Last week", "In 1987", "In 1642", "On 3 May"]
PRESENT_TIME = ["Every morning", "Today", "Each summer", "Now", "On Sundays", "Most evenings",
                "These days", "Every 2 days", "At 7 each morning", "Every year"]
LINKS = ["Then", "After that", "Later", "Soon", "Meanwhile", "Afterwards", "At noon"]


def _clause(rng: random.Random, tense: str) -> str:
    present, past, frame = rng.choice(VERBS)
    verb = f"[[d:{past}]]" if tense == "past" else f"[[p:{present}]]"
    tail = {"move": lambda: f"to {rng.choice(PLACES)}", "obj": lambda: rng.choice(OBJECTS),
            "person": lambda: rng.choice(PEOPLE), "intr": lambda: rng.choice(ADVERBS)}[frame]()
    return f"{verb} {tail}"


def narration(rng: random.Random, tense: str) -> Doc:
    """A short story about one person, every finite verb in `tense` ("past" or "present")."""
    name = rng.choice(NAMES)
    pron = PRONOUN[name]
    times = PAST_TIME if tense == "past" else PRESENT_TIME
    b = DocBuilder(f"{tense}_narration")
    sentences = [f"{rng.choice(times)}, {name} {_clause(rng, tense)}."]
    for _ in range(rng.randint(3, 8)):
        subj = rng.choice([pron.capitalize(), name, f"{rng.choice(LINKS)} {pron}"])
        s = f"{subj} {_clause(rng, tense)}"
        if rng.random() < 0.35:
            s += f" and {_clause(rng, tense)}"
        elif rng.random() < 0.2:
            s += f" near {rng.choice(PLACES)}"
        sentences.append(s + ".")
    b.add(" ".join(sentences))
    return _with_numbers(b.build())


# --- scientific prose -----------------------------------------------------------------------
SCIENCE = {
    "physics": [
        "The kinetic energy of a body [[p:grows]] with the square of its velocity.",
        "A gas at constant volume [[p:exerts]] a higher pressure when its temperature [[p:rises]].",
        "The speed of light in vacuum [[p:is]] close to 299792 kilometres per second.",
        "An electric current [[p:produces]] a magnetic field around the conductor.",
        "The period of a pendulum [[p:depends]] on its length and on the local gravitational field.",
        "Entropy in an isolated system [[p:tends]] to increase over time.",
        "The momentum of the system [[p:remains]] constant when no external force [[p:acts]].",
        "Resistance in a metal wire [[p:increases]] with temperature.",
        "A photon of shorter wavelength [[p:carries]] more energy.",
        "The net force on an object [[p:equals]] its mass times its acceleration.",
        "Sound [[p:travels]] at about 343 metres per second in dry air at 20 degrees Celsius.",
        "Interference between coherent waves [[p:creates]] a pattern of bright and dark fringes.",
    ],
    "chemistry": [
        "A catalyst [[p:lowers]] the activation energy of a reaction without being consumed.",
        "The rate constant [[p:increases]] exponentially with temperature, as the Arrhenius equation [[p:predicts]].",
        "Sodium chloride [[p:dissolves]] readily in water and [[p:dissociates]] into ions.",
        "An acid [[p:donates]] a proton, while a base [[p:accepts]] one.",
        "The pH of a neutral solution at 25 degrees Celsius [[p:is]] 7.",
        "Covalent bonds [[p:form]] when two atoms share a pair of electrons.",
        "Oxidation [[p:involves]] the loss of electrons from a species.",
        "The molar mass of carbon [[p:is]] about 12.01 grams per mole.",
        "An exothermic reaction [[p:releases]] heat to its surroundings.",
        "Noble gases rarely [[p:react]] because their outer electron shells [[p:are]] full.",
        "The equilibrium constant [[p:describes]] the ratio of products to reactants at equilibrium.",
        "Polymers [[p:consist]] of long chains of repeating monomer units.",
    ],
    "biology": [
        "The mitochondrion [[p:produces]] most of the chemical energy of the cell.",
        "Enzymes [[p:bind]] their substrates at a specific active site.",
        "Photosynthesis [[p:converts]] light energy into chemical energy stored in glucose.",
        "DNA polymerase [[p:copies]] the genome before the cell [[p:divides]].",
        "Ribosomes [[p:translate]] messenger RNA into a chain of amino acids.",
        "The adult human skeleton [[p:contains]] 206 bones.",
        "Natural selection [[p:favours]] traits that increase reproductive success.",
        "Neurons [[p:transmit]] signals along their axons as action potentials.",
        "The cell membrane [[p:regulates]] which molecules enter and leave the cell.",
        "Antibodies [[p:recognise]] specific antigens on the surface of a pathogen.",
        "Chlorophyll [[p:absorbs]] mostly red and blue light.",
        "Gene expression [[p:changes]] in response to signals from the environment.",
    ],
    "astronomy": [
        "A star [[p:fuses]] hydrogen into helium in its core.",
        "The Moon [[p:orbits]] the Earth about once every 27.3 days.",
        "Light from the Sun [[p:takes]] about 8 minutes to reach the Earth.",
        "A black hole [[p:bends]] the paths of nearby light rays.",
        "Jupiter [[p:has]] a mass more than 300 times that of the Earth.",
        "The redshift of distant galaxies [[p:indicates]] that the universe [[p:is]] expanding.",
        "A neutron star [[p:packs]] more than the mass of the Sun into a sphere a few kilometres wide.",
        "Comets [[p:develop]] tails of gas and dust when they [[p:approach]] the Sun.",
        "The Earth [[p:rotates]] once on its axis roughly every 24 hours.",
        "Tidal forces [[p:stretch]] bodies that [[p:pass]] close to a massive object.",
    ],
}
SCIENCE_FRAMES = [
    "In this model, the {q} [[p:scales]] linearly with the {q2}.",
    "Measurements of the {q} [[p:show]] a clear dependence on the {q2}.",
    "A higher {q} [[p:leads]] to a lower {q2} under these conditions.",
    "The {q} of the sample [[p:reaches]] {n} units at equilibrium.",
    "The experiment [[p:measures]] the {q} at {n} different values of the {q2}.",
    "This effect [[p:explains]] why the {q} [[p:varies]] with the {q2}.",
]
QUANTITIES = ["temperature", "pressure", "reaction rate", "concentration", "density", "voltage",
              "wavelength", "frequency", "mass", "energy", "population size", "growth rate",
              "surface area", "magnetic flux", "viscosity", "luminosity"]


def science(rng: random.Random) -> Doc:
    """A paragraph of scientific prose from one field, every token labelled `science`."""
    field = rng.choice(sorted(SCIENCE))
    facts = rng.sample(SCIENCE[field], k=rng.randint(2, 4))
    sentences = list(facts)
    for _ in range(rng.randint(1, 3)):
        q, q2 = rng.sample(QUANTITIES, 2)
        sentences.insert(rng.randint(0, len(sentences)), rng.choice(SCIENCE_FRAMES).format(
            q=q, q2=q2, n=rng.choice([2, 3, 5, 10, 12, 40, 100, 250, 1000])))
    b = DocBuilder("science", field=field)
    b.add(" ".join(sentences), "science")
    return _with_numbers(b.build())


def _with_numbers(doc: Doc) -> Doc:
    doc.spans.extend(number_spans(doc.text))
    return doc
